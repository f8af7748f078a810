// BERT-of-Theseus: Xu, Zhou, Ge, Wei & Zhou, "BERT-of-Theseus: Compressing BERT by Progressive Module Replacing"
// (EMNLP 2020). The fine-tuned predecessor's layers are split into n groups of compress_ratio consecutive layers; each
// group has one successor layer. In every forward, an independent Bernoulli(p) draw per group decides whether the group
// runs as its predecessor layers or as its successor (§3.1, eq. 1–3); gradients flow through the mixed network into the
// successor layers only. The task loss is the only loss (no distillation term). The replacement rate follows a
// constant, a linear curriculum p(t) = min(1, k·t + b) (§3.2, eq. 4), or its mirror image, an anti-curriculum
// p(t) = max(0, 1 − (k·t + b)), which the paper compares against. Afterwards the successor alone (predecessor
// embeddings and head + successor layers) is an ordinary BERT checkpoint, fine-tuned further as a next stage.
// As in the official code, the embeddings and the head are frozen during replacement; successor layers start as copies
// of predecessor layers (the first n, as the official code, or the first layer of each group).
using Distillery.Models;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Distillation;

/// <summary>How the replacement probability evolves.</summary>
public enum TheseusScheduler
{
    /// <summary>p(t) = b.</summary>
    Constant,
    /// <summary>p(t) = min(1, k·t + b): the curriculum of the paper.</summary>
    Linear,
    /// <summary>p(t) = max(0, 1 − (k·t + b)): starts with the successors and hands back to the predecessor.</summary>
    [CliName("anti")]
    AntiCurriculum,
}

/// <summary>Which predecessor layers the successor layers copy at the start.</summary>
public enum TheseusInit
{
    /// <summary>Successor i copies predecessor layer i (the official code).</summary>
    [CliName("first")]
    FirstLayers,
    /// <summary>Successor i copies the first layer of group i (layers spread over the depth).</summary>
    [CliName("spread")]
    EvenlySpread,
}

/// <summary>BERT-of-Theseus options (paper defaults for GLUE: linear scheduler with k = 0.0006 … tuned per task, b = 0.3).</summary>
public sealed record TheseusOptions : IDistillMethodOptions<TheseusOptions>
{
    /// <summary>Successor layers n (the predecessor's depth must be a multiple of it).</summary>
    public int SuccessorLayers { get; init; } = 6;
    /// <summary>The scheduler.</summary>
    public TheseusScheduler Scheduler { get; init; } = TheseusScheduler.Linear;
    /// <summary>Slope k per optimizer step.</summary>
    public double K { get; init; } = 0.0006;
    /// <summary>Intercept b (the constant scheduler's p).</summary>
    public double B { get; init; } = 0.3;
    /// <summary>Successor initialisation: first (successor i copies layer i) or spread (the first layer of each group).</summary>
    [CliName("successor-init")]
    public TheseusInit Init { get; init; } = TheseusInit.FirstLayers;

    /// <summary>p at optimizer step <paramref name="step"/>.</summary>
    public double ReplaceRate(int step) => Scheduler switch
    {
        TheseusScheduler.Constant => B,
        TheseusScheduler.Linear => Math.Min(1.0, K * step + B),
        _ => Math.Max(0.0, 1.0 - (K * step + B)),
    };

    /// <summary>Checks the fields.</summary>
    public TheseusOptions Validate()
    {
        if (SuccessorLayers < 1) throw new ArgumentException($"successor layers must be at least 1 (got {SuccessorLayers})");
        if (B is < 0 or > 1) throw new ArgumentException($"b must be in [0, 1] (got {B})");
        if (K < 0) throw new ArgumentException($"k must not be negative (got {K})");
        return this;
    }
}

/// <summary>Progressive module replacing on task batches.</summary>
public sealed class Theseus : IDistillationMethod<TaskBatch>
{
    /// <summary>The registry entry: <c>theseus</c>, on a task; the successor is built from the predecessor here.</summary>
    public static readonly DistillMethod<TheseusOptions> Method = new()
    {
        Name = "theseus",
        Summary = "BERT-of-Theseus progressive module replacing on a task (Xu et al. 2020); the successor is built from the teacher",
        BuildsOwnStudent = true,
        CheckTeacher = (o, plan) => { if (plan.Teacher != null) GroupSize(plan.Teacher.NumHiddenLayers, o); },
        NeedsLabels = _ => "theseus trains on the task loss alone (it has no soft-target term)",
        // The predecessor as loaded: its layers are run and frozen here (a frozen Teacher's copy would freeze the successor).
        OnTask = (o, inputs) => new Theseus(inputs.TeacherModel, o, inputs.Seed),
    };

    /// <summary>Predecessor layers per successor layer; throws when <paramref name="layers"/> do not split into equal groups.</summary>
    static int GroupSize(int layers, TheseusOptions options) =>
        layers % options.SuccessorLayers != 0 || options.SuccessorLayers > layers
            ? throw new ArgumentException($"the predecessor's {layers} layers cannot be split into {options.SuccessorLayers} equal groups")
            : layers / options.SuccessorLayers;

    private readonly BertTaskModel predecessor;
    private readonly TheseusOptions options;
    private readonly int ratio;
    private double replaceRate;

    /// <summary>
    /// Builds the successor from the fine-tuned <paramref name="predecessorModel"/>: its embeddings and head (frozen) with
    /// <see cref="TheseusOptions.SuccessorLayers"/> layers copied from it. The predecessor is frozen too.
    /// </summary>
    public Theseus(BertTaskModel predecessorModel, TheseusOptions options, long seed)
    {
        this.options = options.Validate();
        predecessor = predecessorModel;
        ratio = GroupSize(predecessorModel.Config.NumHiddenLayers, options);
        var copied = Enumerable.Range(0, options.SuccessorLayers).Select(i => options.Init == TheseusInit.FirstLayers ? i : i * ratio).ToArray();
        Student = new StudentInit(StudentInitKind.TeacherLayers, copied).Build(predecessorModel, predecessorModel.Task, seed);
        foreach (var p in predecessorModel.parameters()) p.requires_grad = false;
        // Embeddings, pooler and head stay as the predecessor's (frozen); only the successor layers train.
        foreach (var (name, p) in Student.named_parameters())
            if (!name.StartsWith("bert.encoder.", StringComparison.Ordinal)) p.requires_grad = false;
        replaceRate = options.ReplaceRate(0);
    }

    /// <summary>The successor model: predecessor embeddings and head with the successor layers.</summary>
    public BertTaskModel Student { get; }

    /// <inheritdoc/>
    public nn.Module Module => Student;

    /// <summary>The current replacement probability p.</summary>
    public double ReplaceRate => replaceRate;

    /// <summary>Compression ratio: predecessor layers per successor layer.</summary>
    public int CompressRatio => ratio;

    /// <summary>
    /// The mixed forward: one Bernoulli(p) draw per group (from torch's generator, reseeded per step by the trainer),
    /// the group's predecessor layers or its successor layer. With p = 1 this is the successor alone; with p = 0 the
    /// predecessor (its frozen embeddings and head are the successor's).
    /// </summary>
    public TaskOutput MixedForward(BertInputs inputs, double p)
    {
        var bert = Student.Bert;
        var hidden = bert.Embeddings.forward(inputs.InputIds, inputs.TokenTypeIds, inputs.PositionIds);   // [B, T, H]
        var mask = inputs.AttentionMask is null ? null : BertModel.AdditiveMask(inputs.AttentionMask, hidden.dtype);
        var successors = bert.Encoder.Layers;
        var predecessors = predecessor.Bert.Encoder.Layers;
        var draws = rand(successors.Count).data<float>().ToArray();
        for (int g = 0; g < successors.Count; g++)
        {
            if (draws[g] < p) hidden = successors[g].forward(hidden, mask, null, BertForwardOptions.Default).Hidden;
            else
                for (int l = g * ratio; l < (g + 1) * ratio; l++)
                    hidden = predecessors[l].forward(hidden, mask, null, BertForwardOptions.Default).Hidden;
        }
        var encoder = new EncoderOutput { LastHiddenState = hidden, PoolerOutput = bert.Pooler?.forward(hidden), AttentionMask = inputs.AttentionMask };
        return new TaskOutput(encoder, Student.Head(encoder));
    }

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(TaskBatch batch)
    {
        // The predecessor's dropout follows the student's mode, as the whole mixed model trains together.
        if (predecessor.training != Student.training) { if (Student.training) predecessor.train(); else predecessor.eval(); }
        var output = MixedForward(batch.ToInputs(), replaceRate);
        return (TaskObjective.Loss(Student, output, batch), batch.AttentionMask.Sum());
    }

    /// <inheritdoc/>
    public void OnStepEnd(int step, int totalSteps) => replaceRate = options.ReplaceRate(step);
}
