using System.Text.Json.Nodes;
using Distillery.IO;
using Distillery.Models;
using Distillery.Training;

namespace Distillery.Distillation;

/// <summary>
/// <c>distillery extract</c>: a shallower model made of chosen layers of another, with no training. Its embeddings, the
/// named encoder layers in the order given, and its head (masked-LM, classifier, QA or sentence-embedding with pooling
/// and any Dense projection) are copied as they are: the student DistilBERT starts from (every other layer), which
/// transformers' distillation example builds with scripts/extract_distilbert.py. On its own it is the baseline that
/// shows what a distillation adds over the teacher's layers; it is also a student to fine-tune or distil with any method
/// (<c>--student</c>).
/// </summary>
public sealed record ExtractOptions
{
    /// <summary>The source model folder (a recipe's default: the previous stage's output).</summary>
    public required string Model { get; init; }
    /// <summary>0-based source layers to keep, in order: student layer k is source layer Layers[k].</summary>
    public required int[] Layers { get; init; }
    /// <summary>The output model folder.</summary>
    public required string Out { get; init; }

    /// <summary>Checks what does not need the model: a non-empty list without repeats or negative indices.</summary>
    public ExtractOptions Validate()
    {
        StudentInit.CheckLayers(Layers, available: null, "layer", Model);
        return this;
    }

    /// <summary>Checks the layer indices against the source's config (known in advance for a recipe's earlier stage).</summary>
    public void Check(BertConfig source) => StudentInit.CheckLayers(Layers, source.NumHiddenLayers, "layer", Model);

    /// <summary>The config the extracted model will have.</summary>
    public BertConfig ConfigFor(BertConfig source)
    {
        Check(source);
        return StudentInit.LayersConfig(source, Layers);
    }
}

/// <summary>Writes the model <see cref="ExtractOptions"/> describe (<c>distillery extract</c>, a recipe's <c>extract</c> stage).</summary>
public static class LayerExtraction
{
    /// <summary>The provenance record written next to the model: the source folder and the layers taken.</summary>
    public const string RecordFile = "extract.json";

    /// <summary>
    /// Writes to <see cref="ExtractOptions.Out"/> the model of <see cref="ExtractOptions.Model"/>'s layers
    /// <see cref="ExtractOptions.Layers"/> with its tokenizer; returns the new config. Every check (layer indices, repeats,
    /// the output folder) runs before anything is written; config.json is written last.
    /// </summary>
    public static BertConfig Run(ExtractOptions options, bool overwrite = false)
    {
        string modelDir = options.Model, outDir = options.Out;
        int[] layers = options.Layers;
        RunOutput.CheckFolder(outDir, overwrite, resume: false, [modelDir]);
        var config = BertCheckpoint.ReadConfig(modelDir);
        // StudentInit.Build checks the list too; here it is checked before the weights load, so a bad list costs no load.
        options.Check(config);
        var tokenizer = BertCheckpoint.LoadTokenizer(modelDir, config);
        var (source, _) = BertCheckpoint.Load(modelDir);
        using (source)
        {
            // Every parameter of the student exists in the source under a renamed layer index with the same shape, so the
            // seed's random init is overwritten everywhere (ExtractTests checks each tensor).
            using var student = new StudentInit(StudentInitKind.TeacherLayers, layers).Build(source, source.Task, seed: 0);
            if (source is BertForSentenceEmbedding s && student is BertForSentenceEmbedding t)
            {
                t.SentenceConfig = s.SentenceConfig;
                t.Projection = s.Projection;   // a copy: the setter clones
            }
            RunOutput.Begin(outDir, resume: false);
            var record = new JsonObject
            {
                ["source"] = Path.GetFullPath(modelDir),
                ["source_layers"] = config.NumHiddenLayers,
                ["layers"] = new JsonArray(layers.Select(i => (JsonNode)i).ToArray()),
                ["parameters"] = student.parameters().Sum(p => p.numel()),
                ["version"] = RunFiles.Version,
            };
            RunFiles.Write(outDir, RecordFile, record);
            BertCheckpoint.Save(student, outDir, tokenizer);
            return student.Config;
        }
    }

    /// <summary>Parses a comma-separated layer list such as <c>0,2,4</c>; <paramref name="option"/> names the flag in errors.</summary>
    public static int[] ParseLayers(string text, string option = "layers") =>
        text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(x => int.TryParse(x, out int i) ? i : throw new ArgumentException($"{option}: \"{x}\" is not a layer index"))
            .ToArray();
}
