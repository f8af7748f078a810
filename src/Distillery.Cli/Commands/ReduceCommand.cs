using System.CommandLine;
using Distillery.Models;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary>
/// <c>distillery reduce</c>: fewer embedding dimensions for a sentence-embedding model, no training (a PCA projection
/// fitted on the model's vectors of unlabeled sentences, saved as sentence-transformers' Dense module; see
/// <see cref="EmbeddingReduction"/>).
/// </summary>
public static class ReduceCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Option<string>("--model", "-m") { Description = "Sentence-embedding model folder (sentence-transformers layout: modules.json).", Required = true };
        var dim = new Option<int>("--dim") { Description = "Dimensions to keep (fewer than the model's hidden size).", Required = true };
        var sentences = new Option<string>("--sentences") { Description = "Text file of unlabeled sentences, one per line, to fit the projection on.", Required = true };
        var maxSentences = new Option<int>("--max-sentences") { Description = "Use at most this many non-empty lines (the first ones).", DefaultValueFactory = _ => 20_000 };
        var batchSize = new Option<int>("--batch-size") { Description = "Sentences per encoding batch.", DefaultValueFactory = _ => 64 };
        var output = new Option<string>("--out", "-o") { Description = "Output model folder (the encoder unchanged, plus Normalize → Dense → Normalize).", Required = true };
        var overwrite = TrainingCliOptions.OverwriteOption();
        var command = new Command("reduce",
            "Shrink a sentence-embedding model's vectors to --dim dimensions without training: PCA of its unit vectors on " +
            "--sentences, written as sentence-transformers' Dense module (loads in SentenceTransformer(folder), exports to ONNX). " +
            "The vectors and a vector index get smaller; encoding speed is unchanged.")
        {
            model, dim, sentences, maxSentences, batchSize, output, overwrite,
        };
        command.SetAction(parse =>
        {
            var options = new EmbeddingReductionOptions
            {
                Model = parse.GetValue(model)!, Out = parse.GetValue(output)!, Dimension = parse.GetValue(dim),
                Sentences = parse.GetValue(sentences)!, MaxSentences = parse.GetValue(maxSentences), BatchSize = parse.GetValue(batchSize),
            };
            var record = RunProgress.Show(context, events => EmbeddingReduction.Run(options, events, parse.GetValue(overwrite)));
            context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: {EmbeddingReduction.Describe(record)}");
            return 0;
        });
        return command;
    }
}
