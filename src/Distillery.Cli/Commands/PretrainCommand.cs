using System.CommandLine;
using System.Text.Json.Nodes;
using System.Text.Json;
using Distillery.Data;
using Distillery.Training;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery pretrain</c>: masked-LM pre-training on plain text.</summary>
public static class PretrainCommand
{
    public static Command Create(CliContext context)
    {
        var corpus = new Option<string[]>("--corpus") { Description = "Text files or folders (repeatable). Default with --config: the config's.", AllowMultipleArgumentsPerToken = true };
        var output = new Option<string?>("--out", "-o") { Description = "Output model folder (logs and checkpoints go there too)." };
        var arch = new Option<string?>("--arch") { Description = "Architecture of a new model, e.g. L4-H256 (default L4-H256)." };
        var initFrom = new Option<string?>("--init-from") { Description = "Continue pre-training this model folder instead of a random init." };
        var vocab = new Option<string?>("--vocab") { Description = "vocab.txt for a new model (default: bert-base-uncased's from ../shared/data)." };
        var seqLength = new Option<int?>("--seq-length") { Description = "Tokens per packed sequence (default 128)." };
        var maskProbability = new Option<double?>("--mask-prob") { Description = "Fraction of tokens predicted (default 0.15)." };
        var wholeWord = new Option<bool>("--whole-word-mask") { Description = "Mask whole words (all their word pieces) together." };
        var evalSequences = new Option<int?>("--eval-sequences") { Description = "Sequences held out for MLM evaluation (default 512)." };
        var invalidUtf8 = new Option<string?>("--invalid-utf8") { Description = "error (default): stop at a line that is not UTF-8; latin1: read such lines as Latin-1." };
        invalidUtf8.AcceptOnlyFromAmong("error", "latin1");
        var documentSplit = new Option<string?>("--document-split") { Description = "blank-line (default): a blank line ends a document; file: one document per file." };
        documentSplit.AcceptOnlyFromAmong("blank-line", "file");
        var cacheDir = new Option<string?>("--cache-dir") { Description = "Cache of tokenised corpus files (default ~/.cache/distillery)." };
        var config = new Option<string?>("--config") { Description = "A run_config.json (or options JSON) to start from; flags override it." };
        var resume = new Option<bool>("--resume") { Description = "Continue from the last checkpoint in --out." };
        var freezeEncoder = new Option<bool>("--freeze-encoder") { Description = "Train only the MLM head (cls.*) of --init-from on a frozen encoder: gives an encoder that shipped without one a head." };
        var overwrite = TrainingCliOptions.OverwriteOption();
        var training = new TrainingCliOptions();
        var command = new Command("pretrain", "Pre-train a BERT with masked-LM (15% masking, 80/10/10, dynamic) on text files.")
        {
            corpus, output, arch, initFrom, vocab, seqLength, maskProbability, wholeWord, evalSequences, invalidUtf8, documentSplit, cacheDir, config, resume, overwrite, freezeEncoder,
        };
        training.AddTo(command);
        command.SetAction(parse =>
        {
            var basis = parse.GetValue(config) is string path ? LoadConfig<PretrainOptions>(path, new() { ["corpus"] = parse.GetValue(corpus) is { Length: > 0 } cs ? new JsonArray(cs.Select(x => (JsonNode?)x).ToArray()) : null, ["out"] = parse.GetValue(output) }) : null;
            var corpusPaths = parse.GetValue(corpus) is { Length: > 0 } given ? given : basis?.Corpus.ToArray()
                ?? throw new ArgumentException("give --corpus (text files or folders)");
            string outDir = parse.GetValue(output) ?? basis?.Out ?? throw new ArgumentException("give --out (the output model folder)");
            var options = (basis ?? new PretrainOptions { Corpus = corpusPaths, Out = outDir }) with { Corpus = corpusPaths, Out = outDir };
            if (parse.GetValue(arch) is string a) options = options with { Arch = a };
            if (parse.GetValue(initFrom) is string i) options = options with { InitFrom = i };
            if (parse.GetValue(vocab) is string v) options = options with { VocabPath = v };
            if (parse.GetValue(seqLength) is int l) options = options with { SeqLength = l };
            if (parse.GetValue(maskProbability) is double mp) options = options with { Masking = options.Masking with { Probability = mp } };
            if (parse.GetValue(wholeWord)) options = options with { Masking = options.Masking with { WholeWord = true } };
            if (parse.GetValue(evalSequences) is int es) options = options with { EvalSequences = es };
            if (parse.GetValue(cacheDir) is string c) options = options with { CacheDir = c };
            if (parse.GetValue(documentSplit) is string ds) options = options with { DocumentSplit = ds == "file" ? DocumentSplit.File : DocumentSplit.BlankLine };
            if (parse.GetValue(freezeEncoder)) options = options with { FreezeEncoder = true };
            if (parse.GetValue(invalidUtf8) is string u) options = options with { InvalidUtf8 = u == "latin1" ? InvalidUtf8.Latin1 : InvalidUtf8.Error };
            options = options with { Trainer = training.Apply(parse, options.Trainer) };
            options.Validate();

            var metrics = RunProgress.Show(context, events => Pretraining.Run(options, parse.GetValue(resume), events, parse.GetValue(overwrite)));
            context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: {metrics.ToJsonString()}");
            return 0;
        });
        return command;
    }

    /// <summary>Reads options from a run_config.json ({"command", "options"}) or a bare options object.</summary>
    /// <remarks>Strict: a key that is not an option is an error naming it and the nearest valid one (<see cref="StrictJson"/>).</remarks>
    /// <remarks>
    /// <paramref name="flags"/> holds the values of flags given beside <c>--config</c> (null when not given), keyed by
    /// option name: they fill the config before it is read, so a required key (<c>out</c>, <c>model</c>…) may come from
    /// the command line instead of the file. The flags override the file's values anyway.
    /// </remarks>
    public static T LoadConfig<T>(string path, Dictionary<string, JsonNode?>? flags = null)
    {
        string text = File.Exists(path) ? File.ReadAllText(path) : throw new FileNotFoundException($"{path}: config not found", path);
        try
        {
            var node = System.Text.Json.Nodes.JsonNode.Parse(text);
            if (node is not System.Text.Json.Nodes.JsonObject obj) throw new InvalidDataException($"{path}: expected a JSON object of options");
            bool runConfig = obj["options"] is System.Text.Json.Nodes.JsonObject;
            var options = runConfig ? obj["options"]!.AsObject() : obj;
            foreach (var (key, value) in flags ?? [])
                if (value != null) options[key] = value;
            return StrictJson.Deserialize<T>(options, runConfig ? "options" : "the config");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON or not these options ({e.Message.Split('\n')[0]})");
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{path}: {e.Message}");
        }
    }
}
