// HomoDistil: Liang, Jiang, Li, Tang, Yin & Zhao, "HomoDistil: Homotopic Task-Agnostic Distillation of Pre-trained
// Transformers" (ICLR 2023). The student starts as a copy of the teacher and is pruned iteratively while it is
// distilled, so the two stay close (the "homotopy") until the student reaches the target width:
//     L = α_mlm·L_MLM + α_kl·KL(p_T ‖ p_S) + α_hid·Σ_l MSE(h_S^l, h_T^l) + α_att·Σ_l MSE(A_S^l, A_T^l)
// with l running over the embedding output and every layer for hidden states and over the layers for attention.
// Importance is the sensitivity |θ·∂L/∂θ| accumulated over steps (magnitude and PLATON selectable), aggregated per
// structure; every ΔT steps the cubic schedule sets the pruned share of the way from the teacher's widths to the
// target's, and the lowest-scoring live structures are masked. Masks only shrink and are re-applied after every
// optimizer step, so pruned weights stay zero; Finish() removes them physically (an ordinary, smaller checkpoint).
// Checkpoints carry the mask and the accumulated scores with the weights, so an interrupted run resumes where it was.
// Because the masked student keeps the teacher's full width, no projection is needed for the hidden-state loss.
// Deviations from the paper, and why:
// - Structures are attention heads, FFN neurons and hidden dimensions (whole rows/columns shared across matrices, so the
//   result is a narrower dense BERT), not the paper's per-matrix column/row sparsity, whose rows and columns need not
//   line up across matrices and so need no common width.
// - Hidden-state and attention losses compare the structures the student still has: its kept hidden dimensions
//   (the pruned ones are exactly zero and get no gradient), and its kept heads against the same heads of the teacher.
//   Each is averaged over its layers, so the weights do not scale with depth. Default weights are all 1 (the paper's
//   exact values are not reproduced here), temperature 1.
// - A target with fewer layers than the teacher starts the student from uniformly spaced teacher layers (the top layer
//   of each group) and pairs layers uniformly; the paper keeps the depth.
// - One-shot (OneShot): the same losses with the target reached at once, at the first mask update after the warm-up
//   (scores accumulated over the warm-up at full width): the "prune, then distil" baseline of the paper's claim that
//   the gradual, homotopic path is what keeps the student close to the teacher.
// - Task-specific variant: the same schedule and losses from a fine-tuned teacher, with the task loss on labels in
//   place of MLM and the head's logits for the KL (MSE for regression; start/end KL for span QA).
// - The result is the student as training ends, at the target width, not the best dev checkpoint (intermediate widths
//   would select a model that is not the target); the periodic dev evaluations are logged (with the teacher-student
//   discrepancy).
using Distillery.Models;
using Distillery.Pruning;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Distillation;

/// <summary>HomoDistil's target, importance score, schedule and loss weights.</summary>
public sealed record HomoDistilOptions : IDistillMethodOptions<HomoDistilOptions>
{
    /// <summary>The final width: an architecture (L4-H128-F512, -A heads optional) or a parameter count (9.6M); see <see cref="PruneTarget"/>.</summary>
    public string? Target { get; init; }
    /// <summary>How structures are scored (the paper: sensitivity).</summary>
    public ImportanceScore Score { get; init; } = ImportanceScore.Sensitivity;
    /// <summary>ΔT: optimizer steps between mask updates.</summary>
    public int PruneEvery { get; init; } = 10;
    /// <summary>Fraction of the steps distilled at full width before pruning starts (t_i of the cubic schedule).</summary>
    public double WarmupFraction { get; init; }
    /// <summary>Fraction of the steps distilled at the target width at the end (t_f).</summary>
    public double FinalFraction { get; init; } = 0.2;
    /// <summary>
    /// One-shot pruning + distillation, the baseline the homotopy is measured against: the scores accumulate over the
    /// warm-up at full width, the first mask update after it prunes straight to the target, and the rest of the run
    /// distils the student at the target width (the cubic schedule and the final fraction are not used).
    /// </summary>
    public bool OneShot { get; init; }
    /// <summary>Weight of the student's own loss: MLM on a corpus, the task loss on labels task-specifically.</summary>
    public double AlphaMlm { get; init; } = 1;
    /// <summary>Weight of KL(p_T ‖ p_S) on the logits (MLM vocabulary, or the task head's).</summary>
    public double AlphaKl { get; init; } = 1;
    /// <summary>Weight of the hidden-state MSE (embedding output and every layer).</summary>
    public double AlphaHidden { get; init; } = 1;
    /// <summary>Weight of the attention-probability MSE (every layer).</summary>
    public double AlphaAttention { get; init; } = 1;
    /// <summary>Temperature of the KL term.</summary>
    public double Temperature { get; init; } = 1;

    /// <summary>Checks the fields; throws naming the bad one.</summary>
    public HomoDistilOptions Validate()
    {
        if (string.IsNullOrWhiteSpace(Target)) throw new ArgumentException("homodistil needs a target: an architecture such as L4-H128-F512 or a parameter count such as 9.6M");
        PruneTarget.Parse(Target);
        if (!Enum.IsDefined(Score)) throw new ArgumentException($"unknown importance score {Score} (known: magnitude, sensitivity, platon)");
        if (PruneEvery < 1) throw new ArgumentException($"prune_every must be at least 1 (got {PruneEvery})");
        if (WarmupFraction is < 0 or >= 1 || FinalFraction is < 0 or >= 1 || WarmupFraction + FinalFraction >= 1)
            throw new ArgumentException($"warmup_fraction {WarmupFraction} and final_fraction {FinalFraction} must be in [0, 1) and leave steps to prune in");
        if (!(Temperature > 0)) throw new ArgumentException($"temperature must be positive (got {Temperature})");
        if (AlphaMlm < 0 || AlphaKl < 0 || AlphaHidden < 0 || AlphaAttention < 0 || AlphaMlm + AlphaKl + AlphaHidden + AlphaAttention == 0)
            throw new ArgumentException($"loss weights must be non-negative and not all zero (mlm {AlphaMlm}, kl {AlphaKl}, hidden {AlphaHidden}, attention {AlphaAttention})");
        return this;
    }
}

/// <summary>
/// HomoDistil from a masked-LM teacher on corpus batches (<see cref="MlmBatch"/>) or from a fine-tuned teacher on task
/// batches (<see cref="TaskBatch"/>); the student is built here, as a copy of the teacher.
/// </summary>
public sealed class HomoDistil : IDistillationMethod<MlmBatch>, IDistillationMethod<TaskBatch>, ICheckpointedObjective
{
    /// <summary>The registry entry: <c>homodistil</c>, on a corpus (when one is given) or on a task; the student is the teacher, pruned.</summary>
    public static readonly DistillMethod<HomoDistilOptions> Method = new()
    {
        Name = "homodistil",
        Summary = "HomoDistil: the teacher pruned while distilled into itself (Liang et al. 2023), on a corpus or a task",
        BuildsOwnStudent = true,
        ResultIsFinalModel = true,
        // A target the teacher cannot reach is one line before any data loads.
        CheckTeacher = (o, plan) => { if (plan.Teacher != null) Resolve(plan.Teacher, plan.Head, o); },
        NeedsLabels = o => o.AlphaMlm != 0 ? $"use --alpha-mlm 0 (no task loss), not {o.AlphaMlm}" : null,
        OnTask = (o, inputs) => new HomoDistil(inputs.Teacher, o, inputs.Seed),
        OnCorpus = (o, inputs) => new HomoDistil(inputs.Teacher, o, inputs.Seed),
        // On a corpus the KL is over the teacher's masked-LM predictions; the KL and MLM terms train the student's head.
        UsesTeacherMlmHead = o => o.AlphaKl > 0,
        LeavesMlmHeadUntrained = o => o.AlphaKl == 0 && o.AlphaMlm == 0 ? "homodistil with alpha_kl 0 and alpha_mlm 0 trains hidden states and attention alone" : null,
    };

    /// <summary>The target's widths for a teacher of <paramref name="config"/>; its depth must divide the teacher's.</summary>
    static TargetWidths Resolve(BertConfig config, BertTask task, HomoDistilOptions options)
    {
        var target = PruneTarget.Parse(options.Target!).Resolve(config, task);
        if (config.NumHiddenLayers % target.Layers != 0)
            throw new ArgumentException($"target {options.Target} has {target.Layers} layers, which do not divide the teacher's {config.NumHiddenLayers} (the student keeps uniformly spaced teacher layers)");
        return target;
    }

    private readonly Teacher teacher;
    private readonly HomoDistilOptions options;
    private readonly ImportanceTracker tracker;
    private readonly IReadOnlyList<(int Student, int Teacher)> pairs;   // 1-based layers, as indices into hidden-state lists
    private PruningMask mask;
    private readonly Dictionary<string, double> terms = [];

    /// <summary>
    /// Resolves the target against the teacher and copies the teacher into the student. A target wider than the teacher,
    /// deeper, or not a valid width or count, and an unknown score, are one line here, before any training.
    /// </summary>
    public HomoDistil(Teacher teacher, HomoDistilOptions options, long seed)
    {
        this.options = options.Validate();
        this.teacher = teacher;
        var t = teacher.Model.Config;
        Target = Resolve(t, teacher.Model.Task, options);
        int step = t.NumHiddenLayers / Target.Layers;
        // Equal depth: an exact copy of the teacher. Fewer layers: the top layer of each group of `step`.
        Student = new StudentInit(StudentInitKind.TeacherLayers, Enumerable.Range(1, Target.Layers).Select(k => k * step - 1).ToArray())
            .Build(teacher.Model, teacher.Model.Task, seed);
        pairs = Enumerable.Range(0, Target.Layers + 1).Select(k => (k, k * step)).ToList();
        tracker = new ImportanceTracker(Student, options.Score);
        mask = PruningMask.KeepAll(Student.Config);
    }

    /// <summary>The student as it ends: the target's widths and parameter count (it trains at the teacher's width, masked).</summary>
    public string StudentSummary
    {
        get
        {
            long parameters = PruneTarget.Count(teacher.Model.Config, teacher.Model.Task, Target.Layers, Target.Hidden, Target.Heads, Target.Ffn);
            return $"pruned while distilled to {Target} ({parameters:N0})";
        }
    }

    /// <summary>The resolved target widths.</summary>
    public TargetWidths Target { get; }

    /// <summary>The current keep-mask (full width at the start, the target at the end).</summary>
    public PruningMask Mask => mask;

    /// <inheritdoc/>
    public BertTaskModel Student { get; }

    /// <inheritdoc/>
    public nn.Module Module => Student;

    static readonly BertForwardOptions Internals = new() { OutputHiddenStates = true, OutputAttentions = true };

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(MlmBatch batch)
    {
        if (teacher.Model is not BertForMaskedLM mlmTeacher || Student is not BertForMaskedLM student)
            throw new InvalidOperationException("HomoDistil on a corpus distils a masked-LM teacher (a pre-trained model, before fine-tuning)");
        var inputs = new BertInputs(tensor(batch.InputIds, [batch.Batch, batch.Length]));   // packed sequences: no padding
        var labels = tensor(batch.Labels, [batch.Batch, batch.Length]);
        var selected = labels.ne(Data.MlmMasking.IgnoreIndex);                              // [B, T]
        EncoderOutput t;
        Tensor teacherLogits;
        using (no_grad())
        {
            t = teacher.Encode(inputs, Internals);
            teacherLogits = mlmTeacher.PredictTokens(t.LastHiddenState[selected]);        // [N, V]
        }
        var s = student.Bert.forward(inputs, Internals);
        var studentLogits = student.PredictTokens(s.LastHiddenState[selected]);          // [N, V]
        var soft = Losses.SoftTargetKl(studentLogits, teacherLogits, options.Temperature);
        var loss = options.AlphaKl * soft;
        terms.Clear();
        // The discrepancy the paper plots: KL(p_T ‖ p_S) at T = 1 (the loss's own term when T = 1, the default).
        terms["kl"] = options.Temperature == 1 ? soft.item<float>() : Losses.Discrepancy(studentLogits, teacherLogits);
        if (options.Temperature != 1) terms["soft_kl"] = soft.item<float>();
        if (options.AlphaMlm > 0)
        {
            var mlm = nn.functional.cross_entropy(studentLogits, labels.masked_select(selected));
            loss = loss + options.AlphaMlm * mlm;
            terms["mlm"] = mlm.item<float>();
        }
        var (intermediate, hidden, attention) = Intermediate(s, t, attentionMask: null);
        if (hidden is not null) terms["hidden"] = hidden.item<float>();
        if (attention is not null) terms["attention"] = attention.item<float>();
        return (loss + intermediate, (long)batch.Batch * batch.Length);
    }

    /// <summary>
    /// On a corpus, the last step's terms, unweighted: <c>kl</c> (KL(p_T ‖ p_S) at T = 1 on the masked positions: the
    /// teacher-student discrepancy), <c>soft_kl</c> (the loss's T² · KL when T ≠ 1), <c>mlm</c>, <c>hidden</c> (the
    /// mean hidden-state MSE over the paired layers) and <c>attention</c> (the mean attention MSE), each when its
    /// weight is on. Task-specific runs log dev discrepancies at each evaluation instead, and no terms.
    /// </summary>
    public IReadOnlyDictionary<string, double> LossTerms => terms;

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(TaskBatch batch)
    {
        if (Student.Task == BertTask.MaskedLM) throw new InvalidOperationException("task-specific HomoDistil needs a fine-tuned teacher with a task head");
        var inputs = batch.ToInputs();
        var t = teacher.Forward(inputs, Internals);
        var s = Student.forward(inputs, Internals);
        Tensor soft;
        if (Student.Task == BertTask.SequenceClassification && Student.Config.IsRegression)
            soft = Losses.LogitMse(s.Logits, t.Logits);                                     // [B, 1]
        else if (Student.Task == BertTask.SequenceClassification)
            soft = Losses.SoftTargetKl(s.Logits, t.Logits, options.Temperature);            // [B, C]
        else
        {
            // [B, T, 2]: padded positions get a large negative logit in both, so neither distribution puts mass there.
            var padding = inputs.AttentionMask!.eq(0).unsqueeze(-1);                          // [B, T, 1]
            var sl = s.Logits.masked_fill(padding, -1e4);
            var tl = t.Logits.masked_fill(padding, -1e4);
            soft = (Losses.SoftTargetKl(sl.select(-1, 0), tl.select(-1, 0), options.Temperature) + Losses.SoftTargetKl(sl.select(-1, 1), tl.select(-1, 1), options.Temperature)) / 2;
        }
        var loss = options.AlphaKl * soft;
        if (options.AlphaMlm > 0)
        {
            bool unlabeled = Student.Task == BertTask.SequenceClassification && (Student.Config.IsRegression ? batch.Scores.Any(float.IsNaN) : batch.Labels.Any(l => l < 0));
            if (unlabeled) throw new InvalidOperationException("the task loss needs labels: use alpha_mlm 0 on unlabeled data");
            loss = loss + options.AlphaMlm * TaskObjective.Loss(Student, s, batch);
        }
        return (loss + Intermediate(s.Encoder, t.Encoder, inputs.AttentionMask).Total, batch.AttentionMask.Sum());
    }

    /// <summary>
    /// α_hid · mean over paired layers of the hidden-state MSE on the kept dimensions, plus α_att · mean over paired
    /// layers of the attention MSE on the kept heads (the student's head i is the teacher's head i: it started as it);
    /// and the two means unweighted (null when their weight is off, or no head is left).
    /// </summary>
    (Tensor Total, Tensor? Hidden, Tensor? Attention) Intermediate(EncoderOutput s, EncoderOutput t, Tensor? attentionMask)
    {
        var total = zeros(1);
        Tensor? hiddenMean = null, attentionMean = null;
        if (options.AlphaHidden > 0)
        {
            var kept = mask.Hidden == null || mask.Hidden.All(k => k) ? null
                : tensor(mask.Hidden.Select((k, i) => (k, (long)i)).Where(x => x.k).Select(x => x.Item2).ToArray());
            Tensor Kept(Tensor h) => kept is null ? h : h.index_select(-1, kept);           // [B, T, H']
            var hidden = pairs.Select(p => Losses.HiddenMse(Kept(s.HiddenStates![p.Student]), Kept(t.HiddenStates![p.Teacher]), attentionMask)).ToList();
            hiddenMean = stack(hidden).mean();
            total = total + options.AlphaHidden * hiddenMean;
        }
        if (options.AlphaAttention > 0)
        {
            var attention = new List<Tensor>();
            foreach (var (student, teacherLayer) in pairs.Skip(1))
            {
                var heads = mask.Heads[student - 1].Select((k, i) => (k, (long)i)).Where(x => x.k).Select(x => x.Item2).ToArray();
                if (heads.Length == 0) continue;
                var index = tensor(heads);
                attention.Add(Losses.AttentionMse(s.Attentions![student - 1].index_select(1, index), t.Attentions![teacherLayer - 1].index_select(1, index), attentionMask));   // [B, h', T, T]
            }
            if (attention.Count > 0)
            {
                attentionMean = stack(attention).mean();
                total = total + options.AlphaAttention * attentionMean;
            }
        }
        return (total.squeeze(), hiddenMean, attentionMean);
    }

    /// <inheritdoc/>
    public void AfterBackward() => tracker.Accumulate();

    /// <inheritdoc/>
    public void OnStepEnd(int step, int totalSteps)
    {
        if (step % options.PruneEvery == 0 || step >= totalSteps)
            mask = IterativeMask.Next(Student.Config, mask, tracker.Scores(), Progress(step, totalSteps), Target);
        StructuredPruning.ZeroMasked(Student, mask);
    }

    /// <inheritdoc/>
    public (IReadOnlyDictionary<string, Tensor> Tensors, System.Text.Json.Nodes.JsonObject Values) SaveState() => MaskedTrainingState.Save(tracker, mask);

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, Tensor> tensors, System.Text.Json.Nodes.JsonObject values) =>
        mask = MaskedTrainingState.Load(Student, tracker, tensors, values);

    /// <summary>The cubic schedule's progress (0 at full width, 1 at the target) at <paramref name="step"/> of <paramref name="totalSteps"/>.</summary>
    public double Progress(int step, int totalSteps)
    {
        int warmup = (int)(options.WarmupFraction * totalSteps), final = (int)(options.FinalFraction * totalSteps);
        if (options.OneShot) return step >= warmup ? 1 : 0;
        if (totalSteps - warmup - final <= 0) return step >= totalSteps ? 1 : 0;
        return new CubicSchedule(0, totalSteps, warmup, final).Progress(step);
    }

    /// <summary>
    /// The student with every pruned structure removed, at exactly the target widths: if training stopped before the
    /// schedule's end, the structures still above the target go now, by their current scores.
    /// </summary>
    public BertTaskModel Finish()
    {
        var final = IterativeMask.Next(Student.Config, mask, tracker.Scores(), progress: 1, Target);
        var pruned = StructuredPruning.Shrink(Student, final);
        pruned.train(Student.training);
        return pruned;
    }
}
