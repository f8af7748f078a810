// DistilBERT: Sanh, Debut, Chaumond & Wolf, "DistilBERT, a distilled version of BERT: smaller, faster, cheaper and
// lighter" (2019). Task-agnostic distillation on a corpus with the triple loss
//     L = α_ce · T² · KL(p_T ‖ p_S) over the MLM vocabulary   (soft targets at temperature T, §2 eq. 1)
//       + α_mlm · L_mlm                                          (masked-LM on the student)
//       + α_cos · (1 − cos(h_S, h_T))                            (last hidden states, §3)
// with the student initialised from every other teacher layer (§3 "Student initialization"); then fine-tuning.
// Defaults are the official code's (distillation/train.py): T = 2, α_ce = 5, α_mlm = 2, α_cos = 1.
// Deviations: the soft and MLM terms are taken at the masked positions only, as the official code does for MLM
// (mlm_mask_prop); the cosine term averages over all real tokens. Batches are packed corpus sequences (RoBERTa-style
// dynamic masking) rather than the paper's sentence pairs; there is no next-sentence loss in either.
using Distillery.Models;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Distillation;

/// <summary>DistilBERT's loss weights and temperature.</summary>
public sealed record DistilBertOptions : IDistillMethodOptions<DistilBertOptions>
{
    /// <summary>Temperature of the soft targets.</summary>
    public double Temperature { get; init; } = 2.0;
    /// <summary>Weight of the soft-target KL.</summary>
    public double AlphaCe { get; init; } = 5.0;
    /// <summary>Weight of the student's own masked-LM loss.</summary>
    public double AlphaMlm { get; init; } = 2.0;
    /// <summary>Weight of the cosine loss on the last hidden states.</summary>
    public double AlphaCos { get; init; } = 1.0;

    /// <summary>Checks the fields; throws naming the bad one.</summary>
    public DistilBertOptions Validate()
    {
        if (!(Temperature > 0)) throw new ArgumentException($"temperature must be positive (got {Temperature})");
        if (AlphaCe < 0 || AlphaMlm < 0 || AlphaCos < 0 || AlphaCe + AlphaMlm + AlphaCos == 0)
            throw new ArgumentException($"loss weights must be non-negative and not all zero (ce {AlphaCe}, mlm {AlphaMlm}, cos {AlphaCos})");
        return this;
    }
}

/// <summary>
/// DistilBERT's triple loss on masked-LM batches, from a masked-LM teacher into a masked-LM student (the method, as
/// opposed to the <c>Bert*</c> model classes).
/// </summary>
public sealed class DistilBertMethod : IDistillationMethod<MlmBatch>
{
    /// <summary>The registry entry: <c>distilbert</c>, on a corpus, into every other teacher layer unless a student is given.</summary>
    public static readonly DistillMethod<DistilBertOptions> Method = new()
    {
        Name = "distilbert",
        OptionsKey = "distil_bert",
        Summary = "DistilBERT's triple loss (soft targets, MLM, cosine) on a corpus (Sanh et al. 2019); student: every other teacher layer by default",
        DefaultStudent = teacher => StudentInit.EveryOtherLayer(teacher.NumHiddenLayers),
        CheckTeacher = (o, plan) =>
        {
            if (o.AlphaCos > 0 && plan.Teacher != null && plan.Student is { Kind: StudentInitKind.Random, Arch: string arch }
                && BertArch.Parse(arch).HiddenSize is int width && width != plan.Teacher.HiddenSize)
                throw new ArgumentException(
                    $"student width {width} differs from the teacher's {plan.Teacher.HiddenSize}, which this method's cosine loss cannot handle (set alpha_cos 0)");
        },
        // The soft targets are the teacher's masked-LM predictions; the soft and MLM terms both train the student's head.
        UsesTeacherMlmHead = o => o.AlphaCe > 0,
        LeavesMlmHeadUntrained = o => o.AlphaCe == 0 && o.AlphaMlm == 0 ? "distilbert with alpha_ce 0 and alpha_mlm 0 trains the hidden states alone (cosine)" : null,
        OnCorpus = (o, inputs) => new DistilBertMethod(inputs.Teacher, (BertForMaskedLM)inputs.BuildStudent(), o),
    };

    private readonly Teacher teacher;
    private readonly DistilBertOptions options;
    private readonly BertForMaskedLM student;
    private readonly Dictionary<string, double> terms = [];

    /// <summary>Both models carry masked-LM heads; the cosine term needs equal hidden widths.</summary>
    public DistilBertMethod(Teacher teacher, BertForMaskedLM student, DistilBertOptions options)
    {
        if (teacher.Model is not BertForMaskedLM) throw new ArgumentException("DistilBERT distils a masked-LM teacher (a pre-trained model, before fine-tuning)");
        if (teacher.Model.Config.VocabSize != student.Config.VocabSize)
            throw new ArgumentException($"teacher and student vocabularies differ ({teacher.Model.Config.VocabSize} vs {student.Config.VocabSize} tokens)");
        if (options.AlphaCos > 0 && teacher.Model.Config.HiddenSize != student.Config.HiddenSize)
            throw new ArgumentException($"DistilBERT's cosine loss needs equal hidden widths (teacher {teacher.Model.Config.HiddenSize}, student {student.Config.HiddenSize}); use --alpha-cos 0 or MiniLM for a narrower student");
        this.teacher = teacher;
        this.student = student;
        this.options = options.Validate();
    }

    /// <inheritdoc/>
    public BertTaskModel Student => student;

    /// <inheritdoc/>
    public nn.Module Module => student;

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(MlmBatch batch)
    {
        var ids = tensor(batch.InputIds, [batch.Batch, batch.Length]);
        var labels = tensor(batch.Labels, [batch.Batch, batch.Length]);
        var inputs = new BertInputs(ids);                                    // packed sequences: no padding
        var selected = labels.ne(Data.MlmMasking.IgnoreIndex);                // [B, T]
        var targets = labels.masked_select(selected);                         // [N]

        Tensor teacherHidden, teacherLogits;
        using (no_grad())
        {
            teacherHidden = teacher.Encode(inputs).LastHiddenState;           // [B, T, H]
            teacherLogits = ((BertForMaskedLM)teacher.Model).PredictTokens(teacherHidden[selected]);   // [N, V]
        }
        var studentHidden = student.Bert.forward(inputs).LastHiddenState;    // [B, T, H]
        var studentLogits = student.PredictTokens(studentHidden[selected]);  // [N, V]

        var soft = Losses.SoftTargetKl(studentLogits, teacherLogits, options.Temperature);
        var loss = options.AlphaCe * soft;
        terms.Clear();
        terms["kl"] = Losses.Discrepancy(studentLogits, teacherLogits);   // at T = 1: comparable with HomoDistil's
        terms["soft_kl"] = soft.item<float>();                            // the loss's term: T² · KL at T
        if (options.AlphaMlm > 0)
        {
            var mlm = nn.functional.cross_entropy(studentLogits, targets);
            loss = loss + options.AlphaMlm * mlm;
            terms["mlm"] = mlm.item<float>();
        }
        if (options.AlphaCos > 0)
        {
            var cosine = Losses.HiddenCosine(studentHidden, teacherHidden, mask: null);
            loss = loss + options.AlphaCos * cosine;
            terms["cos"] = cosine.item<float>();
        }
        return (loss, (long)batch.Batch * batch.Length);
    }

    /// <summary>
    /// The last step's terms, unweighted: <c>kl</c> (KL(p_T ‖ p_S) at T = 1 on the masked positions: the discrepancy),
    /// <c>soft_kl</c> (the loss's soft term, T² · KL at the method's T), <c>mlm</c> and <c>cos</c> when their weights are on.
    /// </summary>
    public IReadOnlyDictionary<string, double> LossTerms => terms;
}
