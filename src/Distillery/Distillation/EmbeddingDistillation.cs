// Embedding distillation: Reimers & Gurevych, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
// Distillation" (EMNLP 2020), §2, as sentence-transformers' examples/training/distillation/model_distillation.py applies it
// to compress a model: the student M̂ is trained so that its sentence vector matches the teacher's on unlabeled sentences,
//     L = (1/|B|) Σ_s ‖M(s) − M̂(s)‖² / H                        (MSELoss: mean over the batch and the H dimensions)
// with the student made of a subset of the teacher's layers (the example keeps every other one) or a smaller model.
// Here a cosine term can be added:  + w_cos · (1/|B|) Σ_s (1 − cos(M(s), M̂(s))).
// The vectors are the models' outputs: pooled and, for all-MiniLM-L6-v2 and Distillery's default, L2-normalised.
//
// Deviations, and why:
//   * On unit vectors ‖u − v‖² = 2 − 2 cos(u, v), so the MSE term is (2/H) × the cosine term: the two weights trade
//     off only through the optimiser's scale (Adam normalises it away, clipping does not). Both are offered because the
//     paper uses MSE and sentence-transformers users ask for cosine; the default is the paper's MSE alone.
//   * The run selects nothing on the evaluation task (ResultIsFinalModel): the saved student is the last one, and the
//     dev score (STS-B dev, SQuAD dev, MRPC dev) is measured once at the end, so no number is tuned on the data it reports.
//   * Sentences come from the task's transfer data (--transfer-data, one text per line), cut at the task's max length
//     (256 tokens by default); the paper used parallel sentences, which a monolingual compression does not need.
using Distillery.Models;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Distillation;

/// <summary>Loss weights of embedding distillation.</summary>
public sealed record EmbeddingDistillationOptions : IDistillMethodOptions<EmbeddingDistillationOptions>
{
    /// <summary>Weight of the MSE between student and teacher sentence vectors (the paper's loss).</summary>
    public double MseWeight { get; init; } = 1.0;
    /// <summary>Weight of the mean (1 − cosine) between student and teacher sentence vectors.</summary>
    public double CosineWeight { get; init; }

    /// <summary>Checks the fields; throws naming the bad one.</summary>
    public EmbeddingDistillationOptions Validate()
    {
        if (MseWeight < 0 || !double.IsFinite(MseWeight)) throw new ArgumentException($"mse_weight must be non-negative (got {MseWeight})");
        if (CosineWeight < 0 || !double.IsFinite(CosineWeight)) throw new ArgumentException($"cosine_weight must be non-negative (got {CosineWeight})");
        if (MseWeight + CosineWeight == 0) throw new ArgumentException("mse_weight and cosine_weight are both 0: nothing to train");
        return this;
    }
}

/// <summary>A sentence-embedding student regressing a sentence-embedding teacher's vectors on unlabeled sentences.</summary>
public sealed class EmbeddingDistillation : IDistillationMethod<TaskBatch>
{
    /// <summary>
    /// The registry entry: <c>embedding</c>, on an embedding task (<c>--task sts-embed</c>) with <c>--transfer-data</c>;
    /// the student defaults to every other teacher layer.
    /// </summary>
    public static readonly DistillMethod<EmbeddingDistillationOptions> Method = new()
    {
        Name = "embedding",
        OptionsKey = "embedding_distillation",
        Summary = "embedding distillation (Reimers & Gurevych 2020): the student's sentence vectors regress the teacher's (MSE, optionally cosine) " +
            "on unlabeled text; --task sts-embed|squad-retrieval|mrpc-embed with --transfer-data; student: every other teacher layer by default",
        DefaultStudent = teacher => StudentInit.EveryOtherLayer(teacher.NumHiddenLayers),
        ResultIsFinalModel = true,
        // The teacher enters the loss through its vectors alone: they can be computed once (--teacher-cache shares them
        // across runs and seeds that distil the same teacher on the same sentences).
        DistilsLogitsOnly = true,
        CheckTeacher = (_, plan) =>
        {
            if (plan.Head != BertTask.SentenceEmbedding)
                throw new ArgumentException("embedding distils sentence embeddings: give an embedding task (--task sts-embed, squad-retrieval or mrpc-embed) and --transfer-data");
            if (plan.Teacher != null && plan.Student is { Kind: StudentInitKind.Random, Arch: string arch }
                && BertArch.Parse(arch).HiddenSize is int width && width != plan.Teacher.HiddenSize)
                throw new ArgumentException($"student width {width} differs from the teacher's {plan.Teacher.HiddenSize}: the vectors must have the same length");
        },
        OnTask = (o, inputs) => new EmbeddingDistillation(inputs.Teacher, inputs.BuildStudent(), o),
    };

    private readonly Teacher teacher;
    private readonly EmbeddingDistillationOptions options;

    /// <summary>Both models are sentence-embedding models of the same width; the student takes the teacher's pooling and projection.</summary>
    public EmbeddingDistillation(Teacher teacher, BertTaskModel student, EmbeddingDistillationOptions options)
    {
        if (teacher.Model is not BertForSentenceEmbedding teacherModel || student is not BertForSentenceEmbedding studentModel)
            throw new ArgumentException("embedding distillation needs a sentence-embedding teacher and student (an embedding task: --task sts-embed)");
        if (teacherModel.Config.HiddenSize != studentModel.Config.HiddenSize)
            throw new ArgumentException($"teacher vectors have {teacherModel.Config.HiddenSize} dimensions, the student's {studentModel.Config.HiddenSize}: they must match");
        if (teacherModel.Config.VocabSize != studentModel.Config.VocabSize)
            throw new ArgumentException($"teacher and student vocabularies differ ({teacherModel.Config.VocabSize} vs {studentModel.Config.VocabSize} tokens)");
        studentModel.SentenceConfig = teacherModel.SentenceConfig;
        // A reduced teacher (distillery reduce: a Dense projection to fewer dimensions) passes its projection on, frozen:
        // the student learns to give the vectors the teacher's projection maps the same way, and the targets keep their length.
        studentModel.Projection = teacherModel.Projection;
        this.teacher = teacher;
        this.options = options.Validate();
        Student = student;
    }

    /// <inheritdoc/>
    public BertTaskModel Student { get; }

    /// <inheritdoc/>
    public nn.Module Module => Student;

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(TaskBatch batch)
    {
        var inputs = batch.ToInputs();
        var target = teacher.Logits(batch, inputs);                            // [B, H], no graph (cached when computed once)
        var vectors = Student.forward(inputs).Logits;                          // [B, H]
        return (Compute(vectors, target, options), batch.AttentionMask.Sum());
    }

    /// <summary>w_mse · mean((v − t)²) + w_cos · mean(1 − cos(v, t)) over [B, H] student and teacher vectors.</summary>
    public static Tensor Compute(Tensor student, Tensor teacher, EmbeddingDistillationOptions options)
    {
        var loss = options.MseWeight * nn.functional.mse_loss(student, teacher);
        if (options.CosineWeight > 0)
            loss = loss + options.CosineWeight * (1 - nn.functional.cosine_similarity(student, teacher, dim: -1)).mean();
        return loss;
    }
}
