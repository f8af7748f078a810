using System.Text.Json.Nodes;
using Distillery.Text;
using TorchSharp;

namespace Distillery.Models;

/// <summary>
/// Options of <c>distillery init</c>: a randomly initialised model (BERT init) of a named or explicit shape.
/// Either <see cref="Arch"/>, <see cref="Layers"/> + <see cref="Hidden"/>, or <see cref="Like"/> is given; heads default
/// to H/64 and the FFN width to 4H.
/// </summary>
public sealed record InitOptions
{
    /// <summary>A name such as <c>L4-H256</c> (see <see cref="BertArch"/>).</summary>
    public string? Arch { get; init; }
    /// <summary>Encoder layers (instead of <see cref="Arch"/>).</summary>
    public int? Layers { get; init; }
    /// <summary>Hidden size (instead of <see cref="Arch"/>).</summary>
    public int? Hidden { get; init; }
    /// <summary>Attention heads; default H/64 (at least 1).</summary>
    public int? Heads { get; init; }
    /// <summary>FFN width; default 4H.</summary>
    public int? Ffn { get; init; }
    /// <summary>
    /// An existing model's config.json (or its folder) whose shapes the new model takes: layers, width, heads and FFN
    /// width per layer (a pruned model's too), head size, positions and vocabulary size; weights are a fresh random init.
    /// What it is for: timing a model's shapes where its weights are gone (latency does not depend on the weights), and
    /// a random-init control of a trained model's exact shape.
    /// </summary>
    public string? Like { get; init; }
    /// <summary>Longest input in tokens (position table size); null: 512, or the <see cref="Like"/> model's.</summary>
    public int? MaxPositions { get; init; }
    /// <summary>WordPiece vocabulary; its size is the embedding's row count.</summary>
    public required string VocabPath { get; init; }
    /// <summary>Lower-case input (uncased vocabulary).</summary>
    public bool LowerCase { get; init; } = true;
    /// <summary>Head to attach.</summary>
    public BertTask Task { get; init; } = BertTask.MaskedLM;
    /// <summary>Labels of a classification head (one label = regression).</summary>
    public int NumLabels { get; init; } = 2;
    /// <summary>Seed of the random init.</summary>
    public long Seed { get; init; }
    /// <summary>Output folder.</summary>
    public required string Out { get; init; }

    /// <summary>Checks the options; throws <see cref="ArgumentException"/> naming the option.</summary>
    public InitOptions Validate()
    {
        if (Like != null && (Arch != null || Layers != null || Hidden != null || Heads != null || Ffn != null))
            throw new ArgumentException("--like takes every shape from that model: give it without --arch, --layers, --hidden, --heads or --ffn");
        if (Like == null && Arch == null && (Layers == null || Hidden == null)) throw new ArgumentException("give --arch (e.g. L4-H256), both --layers and --hidden, or --like MODEL");
        if (Arch != null && (Layers != null || Hidden != null)) throw new ArgumentException("give either --arch or --layers/--hidden, not both");
        if (Layers is < 0) throw new ArgumentException($"--layers must not be negative (got {Layers})");
        if (Hidden is <= 0) throw new ArgumentException($"--hidden must be positive (got {Hidden})");
        if (Heads is <= 0) throw new ArgumentException($"--heads must be positive (got {Heads})");
        if (Ffn is < 0) throw new ArgumentException($"--ffn must not be negative (got {Ffn})");
        if (MaxPositions is <= 0) throw new ArgumentException($"--max-positions must be positive (got {MaxPositions})");
        if (NumLabels < 1) throw new ArgumentException($"--num-labels must be at least 1 (got {NumLabels})");
        return this;
    }
}

/// <summary>Creates and saves randomly initialised models.</summary>
public static class ModelInit
{
    /// <summary>The config <paramref name="options"/> describe, for a vocabulary of <paramref name="vocabSize"/> tokens.</summary>
    public static BertConfig ConfigFor(InitOptions options, int vocabSize)
    {
        options.Validate();
        if (options.Like != null) return LikeConfig(options, vocabSize);
        BertConfig shape = options.Arch != null
            ? BertArch.Parse(options.Arch, vocabSize)
            : BertConfig.Create(options.Layers!.Value, options.Hidden!.Value, options.Heads, options.Ffn, vocabSize);
        if (options.Arch != null && (options.Heads != null || options.Ffn != null))
            shape = shape with { NumAttentionHeads = options.Heads ?? shape.NumAttentionHeads, IntermediateSize = options.Ffn ?? shape.IntermediateSize };
        return WithHead(shape with { MaxPositionEmbeddings = options.MaxPositions ?? 512 }, options);
    }

    static BertConfig WithHead(BertConfig shape, InitOptions options) => shape with
    {
        Labels = Enumerable.Range(0, options.NumLabels).Select(i => $"LABEL_{i}").ToArray(),
        ProblemType = options.Task == BertTask.SequenceClassification
            ? (options.NumLabels == 1 ? ProblemType.Regression : ProblemType.SingleLabelClassification)
            : null,
    };

    /// <summary>
    /// The shapes of the <see cref="InitOptions.Like"/> model with this run's head: everything that sizes a tensor is
    /// kept (per-layer heads and FFN widths, head size, positions, vocabulary, segments, activation); what belongs to the
    /// trained model and not to its shape is not (labels, problem type, architectures, the untrained-head mark, unknown
    /// fields such as a sentence-transformers export's).
    /// </summary>
    static BertConfig LikeConfig(InitOptions options, int vocabSize)
    {
        string path = Directory.Exists(options.Like) ? Path.Combine(options.Like!, BertCheckpoint.ConfigFile) : options.Like!;
        if (!File.Exists(path)) throw new FileNotFoundException($"--like {options.Like}: no config.json there", path);
        var like = BertConfig.Load(path);
        if (like.VocabSize != vocabSize)
            throw new ArgumentException($"--like {options.Like} has a vocabulary of {like.VocabSize} tokens but --vocab {options.VocabPath} has {vocabSize}: give that model's vocab.txt");
        var shape = like with
        {
            MaxPositionEmbeddings = options.MaxPositions ?? like.MaxPositionEmbeddings,
            Architectures = [], MlmHeadUntrained = null, ClassifierDropout = null,
            Extra = new Dictionary<string, JsonNode?>(),
        };
        return WithHead(shape, options);
    }

    /// <summary>Builds the model, initialises it with <see cref="InitOptions.Seed"/>, saves it with its tokenizer, and returns its config.</summary>
    public static BertConfig Run(InitOptions options, bool overwrite = false)
    {
        options.Validate();
        RunOutput.CheckFolder(options.Out, overwrite, resume: false, []);
        var tokenizer = BertTextTokenizer.FromVocab(options.VocabPath, options.LowerCase);
        var config = ConfigFor(options, tokenizer.VocabSize).Validate();
        torch.manual_seed(options.Seed);
        using var model = BertTaskModel.Create(config, options.Task);
        RunOutput.Begin(options.Out, resume: false);
        BertCheckpoint.Save(model, options.Out, tokenizer);
        return config;
    }
}
