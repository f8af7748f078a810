// ClassifyText: Distillery's TextClassifier in a .NET app. Loads a fine-tuned model folder (TorchSharp) or an exported
// .onnx file (ONNX Runtime), classifies a few sentences, then many: one by one, from several threads at once on the
// same instance, and in batches; prints the results and the timings. See README.md.
using System.Collections.Concurrent;
using System.Diagnostics;
using Distillery.Inference;
using Distillery.Models;

const string Usage = """
    usage: ClassifyText MODEL [--bf16] [--threads N] [--count N]

      MODEL        a fine-tuned classification model: a folder (config.json, model.safetensors, vocab.txt), run by
                   TorchSharp, or an exported model.onnx with vocab.txt beside it, run by ONNX Runtime
      --bf16       TorchSharp only: bf16 matmuls (fp32 weights and accumulation)
      --threads N  intra-op threads per forward pass (default: the runtime's own choice)
      --count N    sentences in the parallel and batched runs (default 1000)

    example: ClassifyText runs/sst2            (made by: distillery finetune --task sst2 ... --out runs/sst2)
             ClassifyText export/sst2.onnx     (made by: distillery export onnx runs/sst2 --out export/sst2.onnx)
    """;

if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine(Usage);
    return args.Length == 0 ? 1 : 0;
}

string modelPath = args[0];
var options = new InferenceOptions { Warning = message => Console.Error.WriteLine($"warning: {message}") };
int count = 1000;
for (int i = 1; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--bf16":
            options = options with { Precision = ComputePrecision.BFloat16 };
            break;
        case "--threads" when i + 1 < args.Length && int.TryParse(args[i + 1], out int threads):
            options = options with { IntraOpThreads = threads };
            i++;
            break;
        case "--count" when i + 1 < args.Length && int.TryParse(args[i + 1], out int n) && n > 0:
            count = n;
            i++;
            break;
        default:
            Console.Error.WriteLine($"error: unknown or incomplete option {args[i]}\n\n{Usage}");
            return 1;
    }
}

TextClassifier classifier;
var loadWatch = Stopwatch.StartNew();
try
{
    classifier = TextClassifier.Load(modelPath, options);
}
catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException)
{
    // Every load problem (not an ONNX model, no vocab.txt, no trained head...) is one line naming the file.
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
using (classifier)
{
    Console.WriteLine($"{modelPath}: {classifier.Description}, loaded in {loadWatch.Elapsed.TotalMilliseconds:0} ms; " +
        (classifier.IsRegression ? "regression" : $"labels {string.Join(", ", classifier.Labels)}") + $"; at most {classifier.MaxLength} tokens");
    Console.WriteLine();

    // 1. A few sentences, one call each.
    string[] examples =
    [
        "a gripping, funny and beautifully acted film.",
        "the plot is thin and the jokes fall flat.",
        "not the best movie of the year, but far from the worst.",
        "i would happily watch it again.",
        "two hours of my life i will never get back.",
    ];
    foreach (string text in examples)
    {
        var result = classifier.Predict(text);
        string answer = result.Score is double score
            ? $"score {score:0.000}"
            : $"{result.Label,-10} {result.Probabilities[result.LabelIndex].Probability:P1}";
        Console.WriteLine($"  {answer}   {text}");
    }
    Console.WriteLine();

    // 2. Many sentences: one by one on one thread, from many threads at once (the same instance), and in batches.
    string[] subjects = ["the film", "this movie", "the story", "the cast", "the ending", "the soundtrack", "the script", "every scene"];
    string[] verdicts = ["is wonderful", "is dull", "works", "falls apart", "is a delight", "drags on", "surprised me", "felt empty"];
    var sentences = Enumerable.Range(0, count).Select(i => $"{subjects[i % subjects.Length]} {verdicts[i / subjects.Length % verdicts.Length]}.").ToArray();

    // Warm-up: the first call at each input shape pays for allocations and kernel selection; keep that out of the timings.
    foreach (string s in sentences.Take(64)) classifier.Predict(s);
    classifier.PredictBatch(sentences.Take(64).ToList());
    var watch = Stopwatch.StartNew();
    int sequentialCount = Math.Min(count, 200);
    var sequential = sentences.Take(sequentialCount).Select(s => classifier.Predict(s)).ToArray();
    double sequentialMs = watch.Elapsed.TotalMilliseconds;

    int workers = Math.Max(2, Environment.ProcessorCount);
    var parallel = new Classification[count];
    var failures = new ConcurrentQueue<Exception>();
    watch.Restart();
    Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = workers }, i =>
    {
        try { parallel[i] = classifier.Predict(sentences[i]); }
        catch (Exception e) { failures.Enqueue(e); }
    });
    double parallelMs = watch.Elapsed.TotalMilliseconds;
    if (!failures.IsEmpty)
    {
        Console.Error.WriteLine($"error: {failures.Count} parallel calls failed; first: {failures.First().Message}");
        return 1;
    }

    watch.Restart();
    var batched = classifier.PredictBatch(sentences);
    double batchedMs = watch.Elapsed.TotalMilliseconds;

    // The three ways agree (up to float rounding: padding in batches changes the summation order slightly).
    int disagreements = Enumerable.Range(0, count).Count(i =>
        parallel[i].LabelIndex != batched[i].LabelIndex || (i < sequentialCount && sequential[i].LabelIndex != parallel[i].LabelIndex));
    Console.WriteLine($"  one by one, 1 thread:     {sequentialCount,5} sentences in {sequentialMs,8:0} ms  ({sequentialCount / (sequentialMs / 1000),8:0} /s)");
    Console.WriteLine($"  one by one, {workers,2} threads:  {count,5} sentences in {parallelMs,8:0} ms  ({count / (parallelMs / 1000),8:0} /s)");
    Console.WriteLine($"  PredictBatch:             {count,5} sentences in {batchedMs,8:0} ms  ({count / (batchedMs / 1000),8:0} /s)");
    if (!classifier.IsRegression)
    {
        var counts = batched.GroupBy(r => r.Label!).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}");
        Console.WriteLine($"  labels: {string.Join(", ", counts)}; runs that disagree: {disagreements}");
    }
}
return 0;
