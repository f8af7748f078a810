using System.Text.Json.Nodes;
using Distillery.Data;
using Distillery.Models;
using Distillery.Text;
using TorchSharp;

namespace Distillery.Training;

/// <summary>
/// Options of <c>distillery pretrain</c>: masked-LM pre-training of a compact BERT from scratch (or continued from a
/// model folder) on plain text. Defaults follow BERT (15% masking, 80/10/10) with RoBERTa's dynamic masking and
/// full-length packed sequences, no next-sentence task.
/// </summary>
public sealed record PretrainOptions
{
    /// <summary>Text files or folders.</summary>
    public required IReadOnlyList<string> Corpus { get; init; }
    /// <summary>Output model folder (also holds logs and checkpoints).</summary>
    public required string Out { get; init; }
    /// <summary>Architecture of a new model (e.g. L4-H256); ignored with <see cref="InitFrom"/>.</summary>
    public string Arch { get; init; } = "L4-H256";
    /// <summary>Continue from this model folder instead of a random init.</summary>
    public string? InitFrom { get; init; }
    /// <summary>vocab.txt of a new model (default: bert-base-uncased's from the shared data).</summary>
    public string? VocabPath { get; init; }
    /// <summary>Tokens per packed sequence, [CLS] and [SEP] included.</summary>
    public int SeqLength { get; init; } = 128;
    /// <summary>Position table of a new model.</summary>
    public int MaxPositions { get; init; } = 512;
    /// <summary>Masking.</summary>
    public MaskingOptions Masking { get; init; } = new();
    /// <summary>Sequences held out for evaluation (MLM loss, accuracy, perplexity).</summary>
    public int EvalSequences { get; init; } = 512;
    /// <summary>How files split into documents.</summary>
    public DocumentSplit DocumentSplit { get; init; } = DocumentSplit.BlankLine;
    /// <summary>What a line that is not UTF-8 does.</summary>
    public InvalidUtf8 InvalidUtf8 { get; init; } = InvalidUtf8.Error;
    /// <summary>Where tokenised corpus files are cached.</summary>
    public string? CacheDir { get; init; }
    /// <summary>
    /// Train only the MLM head (<c>cls.*</c>) on a frozen encoder (needs <see cref="InitFrom"/>): fits a head to an
    /// encoder that shipped without one, leaving every encoder weight (and the tied decoder, the word embeddings)
    /// exactly as it was. The encoder runs in eval mode (no dropout) and without gradients.
    /// </summary>
    public bool FreezeEncoder { get; init; }
    /// <summary>Optimisation (pre-training defaults: lr 5e-4, 6% warm-up, as compact-model recipes use).</summary>
    public TrainerOptions Trainer { get; init; } = new() { LearningRate = 5e-4, WarmupRatio = 0.06, Epochs = 1, BatchSize = 32 };

    /// <summary>Checks options that the trainer and model do not check themselves.</summary>
    public PretrainOptions Validate()
    {
        if (Corpus.Count == 0) throw new ArgumentException("give at least one corpus file or folder");
        if (SeqLength < 8) throw new ArgumentException($"sequence length must be at least 8 (got {SeqLength})");
        if (EvalSequences < 0) throw new ArgumentException($"eval sequences must not be negative (got {EvalSequences})");
        if (FreezeEncoder && InitFrom == null) throw new ArgumentException("freeze-encoder trains only the MLM head of an existing encoder: give init-from");
        Masking.Validate();
        Trainer.Validate();
        return this;
    }

    /// <summary>The default cache folder: $DISTILLERY_CACHE, else ~/.cache/distillery.</summary>
    public static string DefaultCacheDir() =>
        Environment.GetEnvironmentVariable("DISTILLERY_CACHE") is { Length: > 0 } env ? env
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "distillery");
}

/// <summary>Events of a pre-training or fine-tuning run, for a progress display.</summary>
public sealed record RunEvents
{
    /// <summary>A stage begins (its name, and its total in units, e.g. files or steps).</summary>
    public Action<string, int>? StageStarted { get; init; }
    /// <summary>A stage advanced to this many units done, with a short status line.</summary>
    public Action<int, string>? StageProgress { get; init; }
    /// <summary>A message worth showing (warnings, what was loaded).</summary>
    public Action<string>? Message { get; init; }

    /// <summary>A callback that passes a warning to <paramref name="events"/>' <see cref="Message"/> as "warning: ...", or null when nobody listens.</summary>
    public static Action<string>? Warn(RunEvents events) => events.Message is { } say ? w => say($"warning: {w}") : null;
}

/// <summary>Masked-LM pre-training.</summary>
public static class Pretraining
{
    /// <summary>Runs pre-training and writes the model, <c>run_config.json</c> and <c>metrics.json</c> into <see cref="PretrainOptions.Out"/>.</summary>
    /// <remarks>An existing finished <see cref="PretrainOptions.Out"/> is refused unless <paramref name="overwrite"/> (or <paramref name="resume"/>); see <see cref="RunOutput"/>.</remarks>
    public static JsonObject Run(PretrainOptions options, bool resume = false, RunEvents? events = null, bool overwrite = false)
    {
        options.Validate();
        RunOutput.CheckFolder(options.Out, overwrite, resume, [options.InitFrom]);
        events ??= new RunEvents();
        options = options with { Trainer = options.Trainer.WithResolvedPrecision(RunEvents.Warn(events)) };
        BertTextTokenizer tokenizer;
        BertForMaskedLM model;
        if (options.InitFrom != null)
        {
            var config = BertCheckpoint.ReadConfig(options.InitFrom);
            tokenizer = BertCheckpoint.LoadTokenizer(options.InitFrom, config);
            var (loaded, report) = BertCheckpoint.Load(options.InitFrom, BertTask.MaskedLM);
            foreach (var w in report.Warnings()) events.Message?.Invoke(w);
            model = (BertForMaskedLM)loaded;
        }
        else
        {
            string vocab = options.VocabPath ?? SharedData.Resolve("tokenizers", "bert-base-uncased", "vocab.txt");
            tokenizer = BertTextTokenizer.FromVocab(vocab);
            var config = BertArch.Parse(options.Arch, tokenizer.VocabSize) with { MaxPositionEmbeddings = options.MaxPositions };
            torch.manual_seed(options.Trainer.Seed);
            model = (BertForMaskedLM)BertTaskModel.Create(config, BertTask.MaskedLM);
        }
        try
        {
            ITrainingObjective<MlmBatch> objective = options.FreezeEncoder ? new MlmHeadObjective(model) : new MlmObjective(model);
            return RunOnCorpus(options, tokenizer, model, objective, "pretrain", new { command = "pretrain", options }, resume, events);
        }
        finally
        {
            model.Dispose();
        }
    }

    /// <summary>
    /// The corpus loop shared by pre-training and task-agnostic distillation: tokenise and pack the corpus, hold out
    /// evaluation sequences, train <paramref name="objective"/>, evaluate <paramref name="model"/>'s masked-LM loss, and
    /// save <paramref name="model"/> (or what <paramref name="saved"/> builds from it, e.g. a physically pruned copy,
    /// disposed after saving) with run files to the output folder. <paramref name="untrainedMlmHead"/>: why
    /// <paramref name="objective"/> leaves the masked-LM head untrained (MiniLM), or null when it trains it; the saved
    /// config.json and metrics.json say so, and there is no masked-LM evaluation.
    /// </summary>
    public static JsonObject RunOnCorpus(PretrainOptions options, BertTextTokenizer tokenizer, BertForMaskedLM model,
        ITrainingObjective<MlmBatch> objective, string command, object runConfig, bool resume, RunEvents? events = null, Func<BertForMaskedLM>? saved = null,
        string? untrainedMlmHead = null)
    {
        options.Validate();
        events ??= new RunEvents();
        if (options.SeqLength > model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"sequence length {options.SeqLength} exceeds the model's {model.Config.MaxPositionEmbeddings} positions");

        var files = TextCorpus.ExpandPaths(options.Corpus);
        events.StageStarted?.Invoke("tokenising corpus", files.Count);
        var corpus = TextCorpus.Load(options.Corpus, tokenizer, options.CacheDir ?? PretrainOptions.DefaultCacheDir(), options.DocumentSplit,
            (done, total, file) => events.StageProgress?.Invoke(done, Path.GetFileName(file)), options.InvalidUtf8);
        int sequences = corpus.SequenceCount(options.SeqLength);
        if (sequences <= options.EvalSequences)
            throw new InvalidDataException($"corpus gives {sequences} sequences of {options.SeqLength} tokens, not more than the {options.EvalSequences} held out for evaluation");
        events.Message?.Invoke($"corpus: {files.Count} files, {corpus.Documents:N0} documents, {corpus.Tokens.Length:N0} tokens, {sequences:N0} sequences of {options.SeqLength}");

        // Held-out sequences: a seeded choice, fixed for the run; evaluated with fixed masking (epoch 0 of a non-shuffled source).
        var all = Enumerable.Range(0, sequences).ToArray();
        new Random((int)(options.Trainer.Seed & int.MaxValue)).Shuffle(all);
        var evalIdx = all[..options.EvalSequences].Order().ToArray();
        var trainIdx = all[options.EvalSequences..].Order().ToArray();
        var train = new MlmBatchSource(corpus, tokenizer, trainIdx, options.SeqLength, options.Trainer.BatchSize, options.Masking, options.Trainer.Seed);
        var eval = options.EvalSequences > 0
            ? new MlmBatchSource(corpus, tokenizer, evalIdx, options.SeqLength, options.Trainer.BatchSize, options.Masking, options.Trainer.Seed + 1, shuffle: false)
            : null;

        if (resume) RunFiles.CheckResumable(options.Out, runConfig);
        RunOutput.Begin(options.Out, resume);
        RunFiles.Write(options.Out, "run_config.json", runConfig);
        // An untrained head's held-out MLM loss and accuracy measure its init, not the model: reported as the model's
        // masked-LM score they would make an encoder-only distillation (MiniLM) look like a weak masked-LM model. So the
        // evaluation is not run (the held-out split stays as it is, so the training sequences do not change).
        if (eval != null && untrainedMlmHead != null)
            events.Message?.Invoke($"no held-out masked-LM evaluation: the head is not trained by this run ({untrainedMlmHead})");
        var trainer = new Trainer<MlmBatch>(objective, train, options.Trainer, options.Out)
        {
            Evaluate = eval == null || untrainedMlmHead != null ? null : () => MlmObjective.Evaluate(model, eval),
            OnProgress = p => events.StageProgress?.Invoke(p.Step, $"loss {p.Loss:0.000}  lr {p.LearningRate:0.0e0}  {p.TokensPerSecond:N0} tok/s  eta {p.Remaining:hh\\:mm\\:ss}"),
        };
        events.StageStarted?.Invoke(command == "pretrain" ? "pre-training" : command, trainer.TotalSteps);
        var peak = Runtime.GemmPeaks.TorchOncePerProcess();   // before training, so nothing else runs while it is timed
        var result = trainer.Run(resume);
        model.eval();
        var final = saved?.Invoke() ?? model;
        final.eval();
        // The head's state as this run leaves it: pre-training (and a distillation that trains the head) clears an
        // earlier "untrained" (say, continued pre-training of a MiniLM student); one that does not, sets it.
        BertCheckpoint.Save(final, options.Out, tokenizer, adjustConfig: c => c with { MlmHeadUntrained = untrainedMlmHead });
        if (!ReferenceEquals(final, model)) final.Dispose();   // a copy built for saving (e.g. physically pruned)
        var metrics = new JsonObject
        {
            ["command"] = command,
            ["steps"] = result.Steps,
            ["final_train_loss"] = double.IsFinite(result.FinalLoss) ? result.FinalLoss : null,
            ["tokens_per_second"] = Math.Round(result.TokensPerSecond, 1),
            // Packed sequences of SeqLength tokens; the MLM head runs at the masked share of positions only.
            ["utilization"] = TrainingUtilization.Metrics(model.Config, BertTask.MaskedLM, options.SeqLength, options.Masking.Probability, result.TokensPerSecond, peak, options.FreezeEncoder),
            ["wall_seconds"] = Math.Round(result.Elapsed.TotalSeconds, 1),
            ["cpu_seconds"] = result.CpuSeconds,   // process CPU time: not inflated by pauses (null: resumed from an older checkpoint)
            ["skipped_steps"] = result.SkippedSteps,
            ["corpus_tokens"] = corpus.Tokens.Length,
            ["eval"] = result.Evaluations.Count > 0 ? RunFiles.Metrics(result.Evaluations[^1].Metrics) : null,
            ["precision"] = options.Trainer.Precision.ToString(),
            ["machine"] = Runtime.CpuFeatures.DescribeMachine(),
            ["version"] = RunFiles.Version,
        };
        if (untrainedMlmHead != null) metrics["mlm_head_untrained"] = untrainedMlmHead;   // why "eval" is null
        RunFiles.Write(options.Out, "metrics.json", metrics);
        if (Directory.Exists(trainer.CheckpointDir)) Directory.Delete(trainer.CheckpointDir, recursive: true);
        return metrics;
    }
}
