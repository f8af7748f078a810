using System.CommandLine;
using Distillery.Models;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery init</c>: a randomly initialised model folder.</summary>
public static class InitCommand
{
    public static Command Create(CliContext context)
    {
        var arch = new Option<string?>("--arch") { Description = $"Architecture name, e.g. L4-H256 (Well-Read Students grid: L in {string.Join(",", BertArch.GridLayers)}; H in {string.Join(",", BertArch.GridHidden)}; heads H/64, FFN 4H). Optional -A<heads> -F<ffn>." };
        var layers = new Option<int?>("--layers") { Description = "Encoder layers (instead of --arch)." };
        var hidden = new Option<int?>("--hidden") { Description = "Hidden size (instead of --arch)." };
        var heads = new Option<int?>("--heads") { Description = "Attention heads (default hidden/64)." };
        var ffn = new Option<int?>("--ffn") { Description = "FFN width (default 4 x hidden)." };
        var like = new Option<string?>("--like") { Description = "An existing model folder (or its config.json) whose shapes to take: layers, width, heads and FFN width per layer (a pruned model's too), positions, vocabulary; fresh random weights. E.g. a stand-in to time a model whose weights are gone (latency does not depend on them)." };
        var maxPositions = new Option<int?>("--max-positions") { Description = "Longest input in tokens (default 512, or the --like model's)." };
        var vocab = new Option<string?>("--vocab") { Description = "WordPiece vocab.txt (default: bert-base-uncased's from ../shared/data)." };
        var cased = new Option<bool>("--cased") { Description = "Keep case (default lower-cases, as an uncased vocab needs)." };
        var task = new Option<BertTask>("--task") { Description = "Head to attach.", DefaultValueFactory = _ => BertTask.MaskedLM };
        var numLabels = new Option<int>("--num-labels") { Description = "Classifier outputs (1 = regression).", DefaultValueFactory = _ => 2 };
        var seed = new Option<long>("--seed") { Description = "Seed of the random init.", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out", "-o") { Description = "Output model folder.", Required = true };
        var overwrite = TrainingCliOptions.OverwriteOption();
        var command = new Command("init", "Create a randomly initialised BERT (normal(0, 0.02) weights, zero biases) in the Hugging Face layout.")
        {
            arch, layers, hidden, heads, ffn, like, maxPositions, vocab, cased, task, numLabels, seed, output, overwrite,
        };
        command.SetAction(parse =>
        {
            var options = new InitOptions
            {
                Arch = parse.GetValue(arch), Layers = parse.GetValue(layers), Hidden = parse.GetValue(hidden),
                Heads = parse.GetValue(heads), Ffn = parse.GetValue(ffn), Like = parse.GetValue(like), MaxPositions = parse.GetValue(maxPositions),
                VocabPath = parse.GetValue(vocab) ?? DefaultVocab(),
                LowerCase = !parse.GetValue(cased), Task = parse.GetValue(task), NumLabels = parse.GetValue(numLabels),
                Seed = parse.GetValue(seed), Out = parse.GetValue(output)!,
            };
            var config = ModelInit.Run(options, parse.GetValue(overwrite));
            context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: {BertArch.NameOf(config)}, {BertTasks.ArchitectureName(options.Task)}, vocab {config.VocabSize}.");
            return 0;
        });
        return command;
    }

    /// <summary>bert-base-uncased's vocabulary from the shared data folder.</summary>
    public static string DefaultVocab() =>
        SharedData.TryFind() is { } data && File.Exists(Path.Combine(data, "tokenizers", "bert-base-uncased", "vocab.txt"))
            ? Path.Combine(data, "tokenizers", "bert-base-uncased", "vocab.txt")
            : throw new FileNotFoundException("no --vocab given and ../shared/data/tokenizers/bert-base-uncased/vocab.txt not found");
}
