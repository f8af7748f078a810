// Distillation losses shared by every method. Shapes: B batch, T tokens, V vocabulary or classes, H hidden, h heads.
// Masks are [B, T] with 1 on real tokens and 0 on padding; padded positions never contribute, on either attention axis.
using Distillery.Models;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Distillation;

/// <summary>The losses of knowledge distillation, each a pure function of student and teacher tensors.</summary>
public static class Losses
{
    /// <summary>
    /// Soft-target loss of Hinton et al. (2015): KL(p_T ‖ p_S) with p = softmax(z / T), times T² so that gradient
    /// magnitudes do not shrink with the temperature; averaged over rows ("batchmean"). Logits are [N, V] (any leading
    /// shape is flattened). TorchSharp's <c>kl_div</c> defaults to log-space targets, unlike PyTorch, and has no
    /// batchmean: the target is given as probabilities and the sum divided by the row count here.
    /// </summary>
    public static Tensor SoftTargetKl(Tensor studentLogits, Tensor teacherLogits, double temperature)
    {
        if (temperature <= 0) throw new ArgumentOutOfRangeException(nameof(temperature), "temperature must be positive");
        long classes = studentLogits.shape[^1];
        var s = studentLogits.reshape(-1, classes);
        var t = teacherLogits.reshape(-1, classes);
        var logStudent = nn.functional.log_softmax(s / temperature, -1);
        var teacherProbs = nn.functional.softmax(t / temperature, -1);
        var sum = nn.functional.kl_div(logStudent, teacherProbs, log_target: false, reduction: nn.Reduction.Sum);
        return sum / s.shape[0] * (temperature * temperature);
    }

    /// <summary>
    /// The teacher-student discrepancy of a step, for the log (not a loss: no gradient): KL(p_T ‖ p_S) at temperature 1,
    /// in nats per row, whatever temperature the loss itself uses, so that methods distilled at different temperatures
    /// log the same quantity (HomoDistil's claim is that its discrepancy stays small throughout).
    /// </summary>
    public static double Discrepancy(Tensor studentLogits, Tensor teacherLogits)
    {
        using var _ = no_grad();
        return SoftTargetKl(studentLogits.detach(), teacherLogits, 1).item<float>();
    }

    /// <summary>Mean squared error between logits (regression distillation, or the logit-matching alternative to KL).</summary>
    public static Tensor LogitMse(Tensor studentLogits, Tensor teacherLogits) => nn.functional.mse_loss(studentLogits, teacherLogits, nn.Reduction.Mean);

    /// <summary>Per-token weights [B, T, 1] from a [B, T] mask, and their count.</summary>
    private static (Tensor Weights, Tensor Count) TokenWeights(Tensor mask, ScalarType dtype)
    {
        var w = mask.to(dtype).unsqueeze(-1);   // [B, T, 1]
        return (w, w.sum().clamp_min(1.0));
    }

    /// <summary>
    /// MSE between hidden states [B, T, H] over real tokens only: Σ over tokens and dimensions / (tokens · H).
    /// Both must have the same width (a narrower student needs its own projection, or a method that compares relations).
    /// </summary>
    public static Tensor HiddenMse(Tensor student, Tensor teacher, Tensor? mask)
    {
        if (!student.shape.SequenceEqual(teacher.shape))
            throw new ArgumentException($"hidden states differ in shape: student [{string.Join(", ", student.shape)}], teacher [{string.Join(", ", teacher.shape)}]; project the student first");
        if (mask is null) return nn.functional.mse_loss(student, teacher, nn.Reduction.Mean);
        var (w, count) = TokenWeights(mask, student.dtype);
        return ((student - teacher).pow(2) * w).sum() / (count * student.shape[^1]);
    }

    /// <summary>
    /// DistilBERT's cosine loss: mean over real tokens of 1 − cos(h_S, h_T) (PyTorch's CosineEmbeddingLoss with target 1),
    /// which aligns directions of the hidden-state vectors. States are [B, T, H] of equal width.
    /// </summary>
    public static Tensor HiddenCosine(Tensor student, Tensor teacher, Tensor? mask)
    {
        var cosine = nn.functional.cosine_similarity(student, teacher, dim: -1, eps: 1e-8);   // [B, T]
        if (mask is null) return (1 - cosine).mean();
        var w = mask.to(cosine.dtype);
        return ((1 - cosine) * w).sum() / w.sum().clamp_min(1.0);
    }

    /// <summary>
    /// KL(teacher ‖ student) between attention distributions [B, h, T, T] (MiniLM eq. 4 for attention, eq. 6 for value
    /// relations): summed over keys, averaged over heads and real query positions. Padded keys carry zero teacher mass
    /// and are excluded; padded query rows are excluded from the average.
    /// </summary>
    public static Tensor AttentionKl(Tensor student, Tensor teacher, Tensor? mask)
    {
        if (!student.shape.SequenceEqual(teacher.shape))
            throw new ArgumentException($"attention maps differ in shape: student [{string.Join(", ", student.shape)}], teacher [{string.Join(", ", teacher.shape)}]");
        // t·(log t − log s); xlogy gives 0·log 0 = 0, and the clamp keeps log s finite where the student put no mass.
        var elementwise = xlogy(teacher, teacher) - teacher * student.clamp_min(1e-12).log();   // [B, h, T, T]
        if (mask is null) return elementwise.sum(-1).mean();
        var m = mask.to(student.dtype);
        var keys = m.unsqueeze(1).unsqueeze(2);            // [B, 1, 1, T]
        var queries = m.unsqueeze(1).unsqueeze(-1);        // [B, 1, T, 1]
        var perRow = (elementwise * keys).sum(-1, keepdim: true) * queries;   // [B, h, T, 1]
        return perRow.sum() / (queries.sum() * student.shape[1]).clamp_min(1.0);
    }

    /// <summary>
    /// MSE between attention maps [B, h, T, T] (probabilities, or TinyBERT's unnormalised scores) over real (query, key)
    /// pairs only, averaged over those pairs and heads.
    /// </summary>
    public static Tensor AttentionMse(Tensor student, Tensor teacher, Tensor? mask)
    {
        if (!student.shape.SequenceEqual(teacher.shape))
            throw new ArgumentException($"attention maps differ in shape: student [{string.Join(", ", student.shape)}], teacher [{string.Join(", ", teacher.shape)}]");
        if (mask is null) return nn.functional.mse_loss(student, teacher, nn.Reduction.Mean);
        var m = mask.to(student.dtype);
        var pairs = m.unsqueeze(1).unsqueeze(-1) * m.unsqueeze(1).unsqueeze(2);   // [B, 1, T, T]
        return ((student - teacher).pow(2) * pairs).sum() / (pairs.sum() * student.shape[1]).clamp_min(1.0);
    }

    /// <summary>
    /// Hinton et al.'s task loss for any task head: α·(soft-target loss) + (1 − α)·(the task loss on the labels). The soft
    /// term is <see cref="SoftTargetKl"/> at <paramref name="temperature"/> over classes [B, C]; for regression the MSE
    /// between student and teacher scores [B, 1] (no distribution to soften); for span QA the mean of the start and end
    /// KLs over each window's real tokens (logits [B, T, 2], padding pushed to -1e4 in both). With α = 1 no label is
    /// read, so unlabeled (transfer) batches work. Used by vanilla KD and by QAT distilled from a teacher.
    /// </summary>
    public static Tensor TaskHeadDistillation(BertTaskModel student, Tensor studentLogits, Tensor teacherLogits, TaskBatch batch,
        double alpha, double temperature)
    {
        Tensor soft, hard;
        if (student.Task == BertTask.SequenceClassification && student.Config.IsRegression)
        {
            soft = LogitMse(studentLogits, teacherLogits);                                                 // [B, 1]
            hard = alpha < 1 ? nn.functional.mse_loss(studentLogits.squeeze(-1), tensor(batch.Scores)) : zeros(1);
        }
        else if (student.Task == BertTask.SequenceClassification)
        {
            soft = SoftTargetKl(studentLogits, teacherLogits, temperature);                               // [B, C]
            hard = alpha < 1 ? nn.functional.cross_entropy(studentLogits, Labels(batch.Labels)) : zeros(1);
        }
        else
        {
            // [B, T, 2]: padded positions get a large negative logit in both, so neither distribution puts mass there.
            var padding = tensor(batch.AttentionMask, [batch.Batch, batch.Length]).eq(0).unsqueeze(-1);   // [B, T, 1]
            var s = studentLogits.masked_fill(padding, -1e4);
            var t = teacherLogits.masked_fill(padding, -1e4);
            soft = (SoftTargetKl(s.select(-1, 0), t.select(-1, 0), temperature) + SoftTargetKl(s.select(-1, 1), t.select(-1, 1), temperature)) / 2;
            hard = alpha < 1
                ? (nn.functional.cross_entropy(s.select(-1, 0), Labels(batch.Starts)) + nn.functional.cross_entropy(s.select(-1, 1), Labels(batch.Ends))) / 2
                : zeros(1);
        }
        return alpha * soft + (1 - alpha) * hard.sum();
    }

    /// <summary>
    /// One training step's loss of <see cref="TaskHeadDistillation(BertTaskModel, Tensor, Tensor, TaskBatch, double, double)"/>:
    /// the teacher's logits (no graph) and the student's on <paramref name="batch"/>, and the batch's real tokens.
    /// </summary>
    public static (Tensor Loss, long Tokens) TaskHeadDistillation(Teacher teacher, BertTaskModel student, TaskBatch batch, double alpha, double temperature)
    {
        var inputs = batch.ToInputs();
        var teacherLogits = teacher.Logits(batch, inputs);   // no graph; from the teacher-logit cache when there is one
        var studentLogits = student.forward(inputs).Logits;
        return (TaskHeadDistillation(student, studentLogits, teacherLogits, batch, alpha, temperature), batch.AttentionMask.Sum());
    }

    static Tensor Labels(long[] labels) =>
        labels.Any(l => l < 0)
            ? throw new InvalidOperationException("hard-label loss on unlabeled examples: use alpha 1 (soft targets only) for unlabeled data")
            : tensor(labels);
}
