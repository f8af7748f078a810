using Distillery.Text;
using TorchSharp;

namespace Distillery.Models;

/// <summary>
/// Options of <c>distillery init</c>: a randomly initialised model (BERT init) of a named or explicit shape.
/// Either <see cref="Arch"/> or <see cref="Layers"/> + <see cref="Hidden"/> is given; heads default to H/64 and the
/// FFN width to 4H.
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
    /// <summary>Longest input in tokens (position table size).</summary>
    public int MaxPositions { get; init; } = 512;
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
        if (Arch == null && (Layers == null || Hidden == null)) throw new ArgumentException("give --arch (e.g. L4-H256) or both --layers and --hidden");
        if (Arch != null && (Layers != null || Hidden != null)) throw new ArgumentException("give either --arch or --layers/--hidden, not both");
        if (Layers is < 0) throw new ArgumentException($"--layers must not be negative (got {Layers})");
        if (Hidden is <= 0) throw new ArgumentException($"--hidden must be positive (got {Hidden})");
        if (Heads is <= 0) throw new ArgumentException($"--heads must be positive (got {Heads})");
        if (Ffn is < 0) throw new ArgumentException($"--ffn must not be negative (got {Ffn})");
        if (MaxPositions <= 0) throw new ArgumentException($"--max-positions must be positive (got {MaxPositions})");
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
        BertConfig shape = options.Arch != null
            ? BertArch.Parse(options.Arch, vocabSize)
            : BertConfig.Create(options.Layers!.Value, options.Hidden!.Value, options.Heads, options.Ffn, vocabSize);
        if (options.Arch != null && (options.Heads != null || options.Ffn != null))
            shape = shape with { NumAttentionHeads = options.Heads ?? shape.NumAttentionHeads, IntermediateSize = options.Ffn ?? shape.IntermediateSize };
        return shape with
        {
            MaxPositionEmbeddings = options.MaxPositions,
            Labels = Enumerable.Range(0, options.NumLabels).Select(i => $"LABEL_{i}").ToArray(),
            ProblemType = options.Task == BertTask.SequenceClassification
                ? (options.NumLabels == 1 ? ProblemType.Regression : ProblemType.SingleLabelClassification)
                : null,
        };
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
