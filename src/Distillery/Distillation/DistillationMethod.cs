using Distillery.Models;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Distillation;

/// <summary>
/// The contract every distillation method implements (one method per file). A method is built with its teacher and
/// student (it may reshape the student from the teacher first), computes a step's loss with the teacher in eval mode
/// under no_grad, reacts to step ends (schedules), and hands back the model to save.
/// </summary>
/// <typeparam name="TBatch">The batches it trains on (task batches, or masked-LM batches for task-agnostic methods).</typeparam>
public interface IDistillationMethod<in TBatch> : ITrainingObjective<TBatch>
{
    /// <summary>The student as it trains.</summary>
    BertTaskModel Student { get; }

    /// <summary>The model to save when training ends (a method may assemble or shrink it).</summary>
    BertTaskModel Finish() => Student;

    /// <summary>The student for the run's first message: its architecture and parameter count.</summary>
    string StudentSummary => $"student {BertArch.NameOf(Student.Config)} ({ParameterCounts.Of(Student).Total:N0})";
}

/// <summary>
/// A frozen teacher: eval mode (no dropout), every parameter excluded from autograd, forwards under no_grad. Its
/// outputs carry no graph, so no gradient can reach it, whatever the loss does with them.
/// </summary>
public sealed class Teacher
{
    /// <summary>The model.</summary>
    public BertTaskModel Model { get; }

    /// <summary>Freezes <paramref name="model"/>.</summary>
    public Teacher(BertTaskModel model)
    {
        Model = model;
        model.eval();
        foreach (var p in model.parameters()) p.requires_grad = false;
    }

    /// <summary>The encoder alone, without autograd (no head: a masked-LM teacher's [B, T, V] logits are not computed).</summary>
    public EncoderOutput Encode(BertInputs inputs, BertForwardOptions? options = null)
    {
        using var _ = no_grad();
        if (Model.training) Model.eval();
        return Model.Bert.forward(inputs, options);
    }

    /// <summary>A forward pass without autograd.</summary>
    public TaskOutput Forward(BertInputs inputs, BertForwardOptions? options = null)
    {
        using var _ = no_grad();
        if (Model.training) Model.eval();   // a caller's train() on a parent module must not turn dropout back on
        return Model.forward(inputs, options);
    }

    /// <summary>The teacher's logits on the training examples, by index (null: computed on every batch).</summary>
    public TeacherLogitCache? Cache { get; set; }

    /// <summary>
    /// The head's logits for <paramref name="batch"/> ([B, C]; QA [B, T, 2]) without autograd: from <see cref="Cache"/>
    /// when the batch says which training examples it holds, else a forward pass of <paramref name="inputs"/>.
    /// </summary>
    public Tensor Logits(TaskBatch batch, BertInputs inputs) =>
        Cache != null && batch.Rows != null ? Cache.Rows(batch.Rows) : Forward(inputs).Logits;
}
