// SemanticSearch: Distillery's SentenceEncoder in a .NET app. Encodes the paragraphs of a SQuAD JSON file once (an
// in-memory index of unit vectors), then answers questions with the paragraphs closest by cosine similarity. The model is
// a sentence-embedding folder (TorchSharp) or an exported .onnx file (ONNX Runtime). See README.md.
using System.Diagnostics;
using Distillery.Data;
using Distillery.Inference;

const string Usage = """
    usage: SemanticSearch MODEL SQUAD.json [--top K] [--paragraphs N] [QUESTION ...]

      MODEL         a sentence-embedding model: a folder (config.json, model.safetensors, vocab.txt; sentence-transformers'
                    modules.json optional: without it, mean pooling + normalisation) or an .onnx file exported from one
      SQUAD.json    a SQuAD file whose paragraphs are the documents (e.g. ../shared/data/squad/dev-v1.1.json)
      --top K       paragraphs shown per question (default 3)
      --paragraphs N  index only the first N distinct paragraphs (default all)
      QUESTION      questions to answer; without any, the first 5 questions of the file (with their own paragraph's rank)

    example: SemanticSearch models/minilm-l6-h384 ../shared/data/squad/dev-v1.1.json "what is the capital of normandy?"
    """;

if (args.Length < 2 || args[0] is "-h" or "--help")
{
    Console.WriteLine(Usage);
    return args.Length < 2 && args is not ["-h" or "--help", ..] ? 1 : 0;
}

int top = 3, limit = int.MaxValue;
var questions = new List<string>();
for (int i = 2; i < args.Length; i++)
{
    if (args[i] == "--top" && i + 1 < args.Length && int.TryParse(args[i + 1], out int k) && k > 0) { top = k; i++; }
    else if (args[i] == "--paragraphs" && i + 1 < args.Length && int.TryParse(args[i + 1], out int n) && n > 0) { limit = n; i++; }
    else if (args[i].StartsWith("--", StringComparison.Ordinal)) { Console.Error.WriteLine($"SemanticSearch: unknown or incomplete option {args[i]}\n{Usage}"); return 1; }
    else questions.Add(args[i]);
}

try
{
    var squad = Squad.Load(args[1]);
    var paragraphs = squad.Select(q => q.Context).Distinct().Take(limit).ToList();
    using var encoder = SentenceEncoder.Load(args[0], new InferenceOptions { Warning = _ => { } });   // long paragraphs are cut to the model's max_seq_length
    Console.WriteLine($"{encoder.Description}, {encoder.Dimension}-dimensional vectors, inputs up to {encoder.MaxLength} tokens");

    var clock = Stopwatch.StartNew();
    var index = encoder.EncodeBatch(paragraphs);   // unit vectors: cosine similarity is a dot product
    Console.WriteLine($"indexed {paragraphs.Count:N0} paragraphs in {clock.Elapsed.TotalSeconds:0.0} s ({paragraphs.Count / clock.Elapsed.TotalSeconds:0} paragraphs/s)");

    var asked = questions.Count > 0
        ? questions.Select(q => (Question: q, Gold: (string?)null)).ToList()
        : squad.Where(q => paragraphs.Contains(q.Context)).Take(5).Select(q => (q.Question, Gold: (string?)q.Context)).ToList();
    foreach (var (question, gold) in asked)
    {
        var query = encoder.Encode(question);
        var ranked = index.Select((vector, i) => (Score: SentenceEncoder.Similarity(query, vector), Index: i)).OrderByDescending(x => x.Score).ToList();
        Console.WriteLine();
        Console.WriteLine($"Q: {question}");
        if (gold != null) Console.WriteLine($"   its own paragraph ranks {ranked.FindIndex(x => paragraphs[x.Index] == gold) + 1} of {paragraphs.Count}");
        foreach (var (score, i) in ranked.Take(top))
            Console.WriteLine($"   {score:0.000}  {Shorten(paragraphs[i], 110)}");
    }
    return 0;
}
catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"SemanticSearch: {e.Message}");
    return 1;
}

static string Shorten(string text, int length) => text.Length <= length ? text : text[..(length - 1)] + "…";
