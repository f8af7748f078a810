// The int8 graph against the model it came from, on a task's dev set: ONNX Runtime runs the exported int8 graph, the
// TorchSharp model runs in fp32 and with fake quantization (the QAT simulation) of the scheme the graph records in its
// metadata (7-bit or 8-bit weights), all on the same padded batches (the run-time activation scales of dynamic
// quantization depend on the batch, so the batches must be the same). Where the graph's int8 arithmetic is exact on
// this CPU, the int8 and simulated columns agree; 8-bit weights on a CPU without VNNI are where they part (warned).
using Distillery.Export;
using Distillery.Models;
using Distillery.Numerics;
using Distillery.Training;
using static TorchSharp.torch;

namespace Distillery.Quantization;

/// <summary>Options of <c>distillery quantize --check</c>.</summary>
public sealed record Int8CheckOptions
{
    /// <summary>The fp32 model folder the graph was exported from (with a trained head for <see cref="Task"/>).</summary>
    public required string Model { get; init; }
    /// <summary>The int8 ONNX graph.</summary>
    public required string Onnx { get; init; }
    /// <summary>The task and its data (written inline; its dev split is scored).</summary>
    [JsonInline]
    public required TaskSpec Task { get; init; }
    /// <summary>
    /// Examples per batch; the same batches go to every runtime. Dynamic quantization takes each activation's scale from
    /// the whole batch (padding included), so int8 results depend a little on batching; 64 is the batch the dev
    /// evaluation of fine-tuning and QAT uses (<see cref="TaskObjective.Predict"/>), so the simulated column repeats
    /// the metric QAT reported.
    /// </summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Checks the fields; throws naming the bad one.</summary>
    public Int8CheckOptions Validate()
    {
        if (BatchSize < 1) throw new ArgumentException($"check: batch size must be at least 1 (got {BatchSize})");
        if (!File.Exists(Onnx)) throw new FileNotFoundException($"{Onnx}: ONNX graph not found", Onnx);
        return this;
    }
}

/// <summary>What <see cref="Int8Check.Run"/> measured on the dev set.</summary>
/// <param name="PrimaryMetric">The task's model-selection metric.</param>
/// <param name="Examples">Dev examples (SQuAD: windows) compared.</param>
/// <param name="Fp32">Dev metrics of the TorchSharp model in fp32.</param>
/// <param name="Int8">Dev metrics of the int8 graph in ONNX Runtime.</param>
/// <param name="Simulated">Dev metrics of the TorchSharp model with fake quantization (what QAT trains).</param>
/// <param name="AgreementWithFp32">Share of predictions whose argmax the int8 graph and the fp32 model agree on (NaN for regression).</param>
/// <param name="AgreementWithSimulated">The same between the int8 graph and the fake-quantized model.</param>
/// <param name="MeanAbsDiffFp32">Mean |int8 − fp32| over every logit of real positions.</param>
/// <param name="MeanAbsDiffSimulated">Mean |int8 − simulated| over the same logits.</param>
/// <param name="Scheme">The graph's int8 weight scheme (from its metadata), which the simulation used too.</param>
public sealed record Int8CheckReport(Int8Scheme Scheme, string PrimaryMetric, int Examples,
    IReadOnlyDictionary<string, double> Fp32, IReadOnlyDictionary<string, double> Int8, IReadOnlyDictionary<string, double> Simulated,
    double AgreementWithFp32, double AgreementWithSimulated, double MeanAbsDiffFp32, double MeanAbsDiffSimulated);

/// <summary>Scores an int8 graph against its fp32 model on a task's dev set.</summary>
public static class Int8Check
{
    /// <summary>Runs the dev set through the graph, the fp32 model and the fake-quantized model; see <see cref="Int8CheckReport"/>.</summary>
    public static Int8CheckReport Run(Int8CheckOptions options, RunEvents? events = null)
    {
        events ??= new RunEvents();
        options.Validate();
        using var trained = TaskPipeline.Load(options.Model, options.Task.Validate(), new TrainerOptions().Seed, needTrain: false);
        var (model, data, tokenizer) = (trained.Model, trained.Data, trained.Tokenizer);
        // Validates the file (a Distillery export of this head) and warns when its int8 arithmetic is not exact here.
        using var graph = Inference.OnnxRuntimeBackend.Load(options.Onnx, intraOpThreads: null, warning: w => events.Message?.Invoke($"warning: {w}"));
        var scheme = graph.Int8Scheme ?? throw new InvalidDataException($"{options.Onnx}: an fp32 graph; the check compares an int8 graph with its model");
        model.eval();
        model.SetPrecision(ComputePrecision.Float32);

        var fp32 = new List<float[]>();
        var simulated = new List<float[]>();
        var int8 = new List<float[]>();
        int batches = (data.Eval.Count + options.BatchSize - 1) / options.BatchSize;
        events.StageStarted?.Invoke("check int8", batches);
        for (int b = 0; b < batches; b++)
        {
            var rows = data.Eval.Skip(b * options.BatchSize).Take(options.BatchSize).ToList();
            Qat.Disable(model);
            fp32.AddRange(TaskObjective.Predict(model, rows, tokenizer.PadId, options.BatchSize));
            Qat.Enable(model, scheme);
            simulated.AddRange(TaskObjective.Predict(model, rows, tokenizer.PadId, options.BatchSize));
            int8.AddRange(Bench.ModelBench.Predict(graph, rows, tokenizer.PadId, options.BatchSize));
            events.StageProgress?.Invoke(b + 1, $"{int8.Count:N0} examples");
        }
        Qat.Disable(model);

        var lengths = data.Eval.Select(e => e.InputIds.Length).ToList();
        return new Int8CheckReport(scheme, data.PrimaryMetric, data.Eval.Count, data.Score(fp32), data.Score(int8), data.Score(simulated),
            Agreement(int8, fp32, lengths, model.Task), Agreement(int8, simulated, lengths, model.Task),
            MeanAbsDiff(int8, fp32, lengths, model.Task), MeanAbsDiff(int8, simulated, lengths, model.Task));
    }

    /// <summary>Values of one example that are real outputs: every logit (classification), the real tokens' pairs (QA).</summary>
    static ReadOnlySpan<float> Real(float[] row, int length, BertTask task) => task == BertTask.QuestionAnswering ? row.AsSpan(0, 2 * length) : row;

    static double Agreement(List<float[]> a, List<float[]> b, List<int> lengths, BertTask task)
    {
        if (task != BertTask.QuestionAnswering && a.Count > 0 && a[0].Length < 2) return double.NaN;   // regression
        int agree = 0;
        for (int i = 0; i < a.Count; i++)
        {
            if (task == BertTask.QuestionAnswering)
            {
                var x = Real(a[i], lengths[i], task);
                var y = Real(b[i], lengths[i], task);
                if (Argmax(x, 0) == Argmax(y, 0) && Argmax(x, 1) == Argmax(y, 1)) agree++;
            }
            else if (Array.IndexOf(a[i], a[i].Max()) == Array.IndexOf(b[i], b[i].Max())) agree++;
        }
        return a.Count == 0 ? double.NaN : (double)agree / a.Count;
    }

    /// <summary>Argmax over every other value from <paramref name="offset"/> (QA start: 0, end: 1).</summary>
    static int Argmax(ReadOnlySpan<float> pairs, int offset)
    {
        int best = 0;
        for (int t = 1; t < pairs.Length / 2; t++)
            if (pairs[2 * t + offset] > pairs[2 * best + offset]) best = t;
        return best;
    }

    static double MeanAbsDiff(List<float[]> a, List<float[]> b, List<int> lengths, BertTask task)
    {
        double sum = 0;
        long count = 0;
        for (int i = 0; i < a.Count; i++)
        {
            var x = Real(a[i], lengths[i], task);
            var y = Real(b[i], lengths[i], task);
            for (int j = 0; j < x.Length; j++) sum += Math.Abs((double)x[j] - y[j]);
            count += x.Length;
        }
        return count == 0 ? double.NaN : sum / count;
    }
}
