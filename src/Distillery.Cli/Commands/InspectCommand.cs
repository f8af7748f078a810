using System.CommandLine;
using System.Globalization;
using Distillery.Models;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery inspect</c>: shape, parameters by part, bytes on disk and FLOPs of a model folder.</summary>
public static class InspectCommand
{
    public static Command Create(CliContext context)
    {
        var dir = new Argument<string>("model") { Description = "Model folder (config.json, model.safetensors, vocab.txt)." };
        var seqLength = new Option<int>("--seq-length") { Description = "Sequence length for the FLOPs estimate.", DefaultValueFactory = _ => 128 };
        var command = new Command("inspect", "Show a model's config, parameter counts by part, bytes on disk and FLOPs per token.") { dir, seqLength };
        command.SetAction(parse =>
        {
            var report = ModelInspector.Inspect(parse.GetValue(dir)!, parse.GetValue(seqLength));
            Render(context.Console, report);
            return 0;
        });
        return command;
    }

    /// <summary>Human-readable count: 4.4M, 110.1M, 512K.</summary>
    public static string Count(double n) => n switch
    {
        >= 1e9 => (n / 1e9).ToString("0.0", CultureInfo.InvariantCulture) + "G",
        >= 1e6 => (n / 1e6).ToString("0.0", CultureInfo.InvariantCulture) + "M",
        >= 1e3 => (n / 1e3).ToString("0.0", CultureInfo.InvariantCulture) + "K",
        _ => n.ToString("0", CultureInfo.InvariantCulture),
    };

    /// <summary>Human-readable size in bytes.</summary>
    public static string Bytes(long n) => n switch
    {
        >= 1 << 30 => (n / (double)(1 << 30)).ToString("0.00", CultureInfo.InvariantCulture) + " GiB",
        >= 1 << 20 => (n / (double)(1 << 20)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB",
        >= 1 << 10 => (n / (double)(1 << 10)).ToString("0.0", CultureInfo.InvariantCulture) + " KiB",
        _ => $"{n} B",
    };

    static void Render(IAnsiConsole console, ModelReport r)
    {
        var c = r.Config;
        bool uniform = c.LayerHeads == null && c.LayerIntermediateSizes == null;
        console.MarkupLineInterpolated($"[bold]{r.Directory}[/]");
        console.MarkupLineInterpolated($"  {BertTasks.ArchitectureName(r.Task)}  {(uniform ? BertArch.NameOf(c) : "non-uniform")}  layers {c.NumHiddenLayers}, hidden {c.HiddenSize}, heads {c.NumAttentionHeads} x {c.HeadSize}, FFN {c.IntermediateSize}, vocab {c.VocabSize}, positions {c.MaxPositionEmbeddings}, {c.HiddenAct.ToString().ToLowerInvariant()}, eps {c.LayerNormEps:G3}, stored {c.TorchDtype}");
        if (!uniform)
            console.MarkupLineInterpolated($"  per layer: heads [[{string.Join(", ", Enumerable.Range(0, c.NumHiddenLayers).Select(c.HeadsInLayer))}]], FFN [[{string.Join(", ", Enumerable.Range(0, c.NumHiddenLayers).Select(c.IntermediateSizeOf))}]]");
        console.MarkupLineInterpolated($"  transformers: {c.TransformersIncompatibility() ?? $"loads with {BertTasks.ArchitectureName(r.Task)}.from_pretrained"}");
        if (r.Task == BertTask.MaskedLM && c.MlmHeadUntrained is string why)
            console.MarkupLineInterpolated($"  masked-LM head: [yellow]untrained[/] ({why}); fine-tune it, or train the head before fill-mask");
        if (r.Task == BertTask.SequenceClassification)
            console.MarkupLineInterpolated($"  labels: {string.Join(", ", c.Labels)}{(c.IsRegression ? " (regression)" : "")}");
        if (r.Sentence is { } sentence)
            console.MarkupLineInterpolated($"  sentence embedding: {sentence.Pooling.ToString().ToLowerInvariant()} pooling{(r.EmbeddingDimension != c.HiddenSize ? $"{(sentence.NormalizeBeforeProjection ? ", normalised" : "")}, projected {c.HiddenSize} → {r.EmbeddingDimension} (Dense)" : "")}{(sentence.Normalize ? ", normalised" : "")}: {r.EmbeddingDimension} dimensions, inputs up to {sentence.MaxSeqLength} tokens");

        var table = new Table().AddColumn("part").AddColumn(new TableColumn("parameters").RightAligned()).AddColumn(new TableColumn("share").RightAligned());
        var p = r.Parameters;
        foreach (var (name, n) in new[] { ("embeddings", p.Embeddings), ("encoder", p.Encoder), ("pooler", p.Pooler), ("head", p.Head) })
            table.AddRow(name, $"{n:N0}", p.Total == 0 ? "-" : $"{100.0 * n / p.Total:0.0}%");
        table.AddRow("[bold]total[/]", $"[bold]{p.Total:N0} ({Count(p.Total)})[/]", "100%");
        console.Write(table);

        var files = new Table().AddColumn("file").AddColumn(new TableColumn("bytes").RightAligned());
        foreach (var (name, bytes) in r.Files) files.AddRow(Markup.Escape(name), $"{bytes:N0}");
        files.AddRow("[bold]on disk[/]", $"[bold]{r.BytesOnDisk:N0} ({Bytes(r.BytesOnDisk)})[/]");
        console.Write(files);

        console.MarkupLineInterpolated($"  FLOPs per token at length {r.SeqLength}: encoder {Count(r.EncoderFlopsPerToken)}, head {Count(r.HeadFlops)}{(r.Task == BertTask.MaskedLM ? " (MLM head, per predicted token)" : " (per sequence)")}");
    }
}
