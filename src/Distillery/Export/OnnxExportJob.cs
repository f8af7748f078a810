// What `distillery export onnx` does, as one library entry point: load a model folder with its trained head, export
// it, put its tokenizer and config beside the .onnx file (a folder holding both is what inference loads), and check the
// graph in ONNX Runtime against the TorchSharp forward on a few real sentences.
using Distillery.Models;
using Distillery.Numerics;
using Distillery.Text;
using Microsoft.ML.OnnxRuntime;

namespace Distillery.Export;

/// <summary>The outcome of <see cref="OnnxExportJob.Run"/>.</summary>
/// <param name="Path">The written .onnx file.</param>
/// <param name="Bytes">Its size.</param>
/// <param name="Task">The exported head.</param>
/// <param name="CopiedFiles">Tokenizer/config files copied next to the graph (those the folder lacked).</param>
/// <param name="Check">ONNX Runtime vs TorchSharp on the check sentences, or null when the check was skipped.</param>
/// <param name="Warnings">
/// One line each: 8-bit int8 weights exported on a CPU that does not compute them exactly, or an int8 scheme other than
/// the one the model was quantization-aware trained for. Empty when there is nothing to say.
/// </param>
public sealed record OnnxExportResult(string Path, long Bytes, BertTask Task, IReadOnlyList<string> CopiedFiles, OnnxParityReport? Check,
    IReadOnlyList<string> Warnings);

/// <summary>Exports a model folder to ONNX and checks the result.</summary>
public static class OnnxExportJob
{
    /// <summary>fp32 graphs must match the TorchSharp forward this closely on the check sentences.</summary>
    public const double Fp32Tolerance = 1e-4;
    /// <summary>fp32 sentence-embedding graphs must give every check sentence at least this cosine with the TorchSharp vector.</summary>
    public const double MinFp32Cosine = 0.9999;

    /// <summary>
    /// Throws when an fp32 export's check found ONNX Runtime away from TorchSharp (a wrong graph); int8 graphs and
    /// unchecked exports pass (int8 moves the outputs by design; the check reports by how much).
    /// </summary>
    public static void EnsureFp32Parity(OnnxExportResult result, OnnxExportOptions options)
    {
        if (options.Int8 || result.Check is not { } check) return;
        if (!(check.MaxAbsDiff <= Fp32Tolerance) || check.MinCosine < MinFp32Cosine)
            throw new InvalidOperationException($"{result.Path}: ONNX Runtime differs from the TorchSharp model by {check.MaxAbsDiff:G3} (> {Fp32Tolerance:G}); the graph is wrong");
    }

    /// <summary>Files that travel with the graph so that its folder can be loaded for inference.</summary>
    public static readonly IReadOnlyList<string> CompanionFiles =
        [BertCheckpoint.VocabFile, "tokenizer_config.json", "special_tokens_map.json", BertCheckpoint.ConfigFile];

    /// <summary>Sentences the check runs (pairs for QA: question, context). Real text, varied lengths, so padding is exercised.</summary>
    static readonly (string A, string? B)[] CheckSentences =
    [
        ("The quick brown fox jumps over the lazy dog.", null),
        ("A gripping, beautifully acted film that I would happily watch again.", null),
        ("It was a dull and far too long story.", null),
        ("Paris is the capital and most populous city of France.", null),
        ("Where was the treaty signed?", "The treaty was signed in Paris in 1783, ending the war between Britain and the United States."),
        ("Who wrote the report?", "The report, written by the committee's chair, was published on Monday."),
    ];

    /// <summary>
    /// The int8 scheme to export <paramref name="modelDir"/> with when none is asked for: the one it was
    /// quantization-aware trained for (<see cref="Int8Quantization.TrainedFor"/>), else the portable default (7-bit).
    /// </summary>
    public static Int8Scheme DefaultScheme(string modelDir) =>
        Int8Quantization.TrainedFor(BertCheckpoint.ReadConfig(modelDir).Extra) ?? Int8Quantization.DefaultScheme;

    /// <summary>
    /// Loads <paramref name="modelDir"/> with the head its config names (refusing a folder whose head weights are missing,
    /// which would export a random head), writes <paramref name="outPath"/>, copies the tokenizer files and config.json
    /// next to it where that folder lacks them, and unless <paramref name="check"/> is false compares ONNX Runtime with
    /// TorchSharp on <see cref="CheckSentences"/>. <paramref name="task"/> overrides the head the folder names: only
    /// <see cref="BertTask.SentenceEmbedding"/> makes sense there (any encoder is one, with mean pooling + normalisation
    /// unless the folder's sentence-transformers files say otherwise).
    /// </summary>
    public static OnnxExportResult Run(string modelDir, string outPath, OnnxExportOptions options, bool check = true, BertTask? task = null)
    {
        options.Validate();
        if (task is { } head && head != BertTask.SentenceEmbedding)
            throw new ArgumentException($"a model folder exports with the head it was trained with; only a sentence embedding can be asked for (not {head})");
        var config = BertCheckpoint.ReadConfig(modelDir);
        BertTextTokenizer? tokenizer = check ? BertCheckpoint.LoadTokenizer(modelDir, config) : null;
        var (model, report) = BertCheckpoint.Load(modelDir, task);
        using (model)
        {
            if (report.Initialized.Count > 0)
                throw new InvalidDataException($"{modelDir}: has no trained {BertTasks.ArchitectureName(model.Task)} head (missing {string.Join(", ", report.Initialized.Take(3))}); fine-tune it first");
            model.eval();
            OnnxExporter.Export(model, outPath, options);
            var warnings = new List<string>();
            if (options.Int8)
            {
                if (Int8Quantization.PortabilityWarning(options.Int8Scheme, Runtime.CpuFeatures.Current) is string portability) warnings.Add(portability);
                if (Int8Quantization.TrainedFor(model.Config.Extra) is { } trained && trained != options.Int8Scheme)
                    warnings.Add($"{modelDir} was quantization-aware trained for {Int8Quantization.Name(trained)} int8 weights but is exported with " +
                        $"{Int8Quantization.Name(options.Int8Scheme)}: the graph is not what its training simulated (--int8-weights {Int8Quantization.Name(trained)} matches it)");
            }

            var copied = new List<string>();
            string outDir = Path.GetDirectoryName(Path.GetFullPath(outPath))!;
            foreach (var name in CompanionFiles)
            {
                string source = Path.Combine(modelDir, name), target = Path.Combine(outDir, name);
                if (!File.Exists(source) || File.Exists(target)) continue;
                // config.json as the graph was exported (architectures names the exported head); the rest byte for byte.
                if (name == BertCheckpoint.ConfigFile) (model.Config with { Architectures = [BertTasks.ArchitectureName(model.Task)] }).Save(target);
                else
                {
                    var bytes = File.ReadAllBytes(source);
                    AtomicFile.Write(target, s => s.Write(bytes));
                }
                copied.Add(name);
            }

            OnnxParityReport? parity = null;
            if (tokenizer != null)
            {
                var texts = model.Task == BertTask.QuestionAnswering ? CheckSentences.Where(s => s.B != null).ToArray() : CheckSentences.Where(s => s.B == null).ToArray();
                if (model.Task == BertTask.MaskedLM) texts = texts.Select(t => (t.A.Replace("capital", tokenizer.MaskToken), t.B)).ToArray();
                var batch = tokenizer.EncodeBatch(texts, maxLength: Math.Min(128, config.MaxPositionEmbeddings));
                using var session = new InferenceSession(outPath);
                parity = OnnxParity.Compare(model, session, batch);
            }
            return new OnnxExportResult(outPath, new FileInfo(outPath).Length, model.Task, copied, parity, warnings);
        }
    }
}
