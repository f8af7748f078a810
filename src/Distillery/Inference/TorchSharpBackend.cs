using Distillery.Models;
using Distillery.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Inference;

/// <summary>
/// A <see cref="BertTaskModel"/> in eval mode, run under <c>no_grad</c>. Concurrent calls are not serialised: in eval mode
/// the forward pass only reads the parameters, and libtorch's grad mode and TorchSharp's dispose scopes are per thread,
/// so each call builds its own graph-free temporaries and frees them before returning.
/// </summary>
internal sealed class TorchSharpBackend : IInferenceBackend
{
    private readonly BertTaskModel model;
    private readonly bool ownsModel;

    /// <summary>Wraps <paramref name="model"/> (put in eval mode, matmuls set to <paramref name="precision"/>).</summary>
    public TorchSharpBackend(BertTaskModel model, ComputePrecision precision, bool ownsModel)
    {
        this.model = model;
        this.ownsModel = ownsModel;
        model.eval();
        model.SetPrecision(precision);
        Description = precision == ComputePrecision.BFloat16 ? "TorchSharp bf16" : "TorchSharp fp32";
    }

    /// <summary>
    /// Loads a model folder that must carry a trained <paramref name="task"/> head: a folder whose config names another
    /// head, or whose weights lack the head, is one line (the head would otherwise be random). A sentence embedding has
    /// no trained head: any encoder folder loads as one (pooling from its sentence-transformers files, or mean +
    /// normalisation without them, as sentence-transformers does for a plain transformers model).
    /// </summary>
    public static TorchSharpBackend Load(string dir, BertTask task, ComputePrecision precision)
    {
        var config = BertCheckpoint.ReadConfig(dir);
        var named = BertCheckpoint.TaskOf(dir, config);
        if (named != task && task != BertTask.SentenceEmbedding)
            throw new InvalidDataException($"{dir}: is a {BertTasks.ArchitectureName(named)} model, not {BertTasks.ArchitectureName(task)}; fine-tune it for the task first");
        var (model, report) = BertCheckpoint.Load(dir, task);
        if (report.Initialized.Count > 0)
        {
            model.Dispose();
            throw new InvalidDataException($"{dir}: has no trained {BertTasks.ArchitectureName(task)} head (missing {string.Join(", ", report.Initialized.Take(3))}); fine-tune it first");
        }
        return new TorchSharpBackend(model, precision, ownsModel: true);
    }

    public BertTask Task => model.Task;
    public BertConfig Config => model.Config;
    public string Description { get; }

    public BatchLogits Run(TokenizedBatch batch)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long[] shape = [batch.Count, batch.Length];
        var inputs = new BertInputs(tensor(batch.InputIds, shape), tensor(batch.AttentionMask, shape), tensor(batch.TokenTypeIds, shape));
        var output = model.forward(inputs);
        if (model.Task == BertTask.QuestionAnswering)
            return new BatchLogits(batch.Count, batch.Length, null,
                output.StartLogits.contiguous().data<float>().ToArray(),   // [B, T]
                output.EndLogits.contiguous().data<float>().ToArray());    // [B, T]
        return new BatchLogits(batch.Count, batch.Length, output.Logits.contiguous().data<float>().ToArray());   // [B, C] or [B, T, V]
    }

    public void Dispose()
    {
        if (ownsModel) model.Dispose();
    }
}
