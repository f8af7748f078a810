// Vanilla knowledge distillation (task-specific): Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
// Network" (2015). Loss = α·T²·KL(p_T ‖ p_S) at temperature T + (1 − α)·(task loss on the labels).
// Deviations: for regression (STS-B) the soft term is the MSE between student and teacher scores (no distribution to
// soften); for span QA it is the KL of start and end distributions over the real tokens of each window.
using Distillery.Models;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Distillation;

/// <summary>Options of vanilla KD.</summary>
public sealed record KdOptions : IDistillMethodOptions<KdOptions>
{
    /// <summary>Softmax temperature T of the soft targets.</summary>
    public double Temperature { get; init; } = 2.0;
    /// <summary>Weight α of the soft-target loss; 1 − α goes to the hard labels. 1 uses soft targets only (unlabeled data).</summary>
    public double Alpha { get; init; } = 0.5;

    /// <summary>Checks the fields; throws naming the bad one.</summary>
    public KdOptions Validate()
    {
        if (!(Temperature > 0)) throw new ArgumentException($"temperature must be positive (got {Temperature})");
        if (Alpha is < 0 or > 1) throw new ArgumentException($"alpha must be in [0, 1] (got {Alpha})");
        return this;
    }
}

/// <summary>Vanilla KD from a fine-tuned teacher on task batches (classification, regression, span QA).</summary>
public sealed class KnowledgeDistillation : IDistillationMethod<TaskBatch>
{
    /// <summary>The registry entry: <c>kd</c>, on a task, into a given student.</summary>
    public static readonly DistillMethod<KdOptions> Method = new()
    {
        Name = "kd",
        Summary = "vanilla knowledge distillation on a task (Hinton et al. 2015) into a given student",
        NeedsLabels = o => o.Alpha != 1 ? $"use --alpha 1 (soft targets only), not {o.Alpha}" : null,
        DistilsLogitsOnly = true,
        OnTask = (o, inputs) => new KnowledgeDistillation(inputs.Teacher, inputs.BuildStudent(), o),
    };

    private readonly Teacher teacher;
    private readonly KdOptions options;

    /// <summary>Distils <paramref name="teacher"/> into <paramref name="student"/>; both must carry the same head.</summary>
    public KnowledgeDistillation(Teacher teacher, BertTaskModel student, KdOptions options)
    {
        this.teacher = teacher;
        Student = student;
        this.options = options.Validate();
        if (teacher.Model.Task != student.Task)
            throw new ArgumentException($"teacher head {BertTasks.ArchitectureName(teacher.Model.Task)} and student head {BertTasks.ArchitectureName(student.Task)} differ");
        if (student.Task == BertTask.MaskedLM) throw new ArgumentException("vanilla KD distils a task head; use distilbert for masked-LM distillation");
        if (student.Task == BertTask.SentenceEmbedding) throw new ArgumentException("vanilla KD distils logits; use --method embedding for sentence embeddings");
        if (teacher.Model.Config.VocabSize != student.Config.VocabSize)
            throw new ArgumentException($"teacher and student vocabularies differ ({teacher.Model.Config.VocabSize} vs {student.Config.VocabSize} tokens)");
        if (student.Task == BertTask.SequenceClassification && teacher.Model.Config.NumLabels != student.Config.NumLabels)
            throw new ArgumentException($"teacher has {teacher.Model.Config.NumLabels} outputs, the student {student.Config.NumLabels}");
    }

    /// <inheritdoc/>
    public BertTaskModel Student { get; }

    /// <inheritdoc/>
    public nn.Module Module => Student;

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(TaskBatch batch) => Losses.TaskHeadDistillation(teacher, Student, batch, options.Alpha, options.Temperature);
}
