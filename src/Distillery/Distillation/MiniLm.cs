// MiniLM: Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained
// Transformers" (2020), and "MiniLMv2: Multi-Head Self-Attention Relation Distillation" (2021).
// v1 (eq. 4-6): L = KL(A_T ‖ A_S) + KL(VR_T ‖ VR_S) on the LAST layer, with A = softmax(QKᵀ/√d_k) per head and the
//   value relation VR = softmax(VVᵀ/√d_k); per head and query position, padding masked on both axes. Needs equal head
//   counts (the relations are compared head by head); the widths are free.
// v2 (eq. 3-6 of MiniLMv2): Q-Q, K-K and V-V relations R = softmax(XXᵀ/√d_r) after concatenating the heads and
//   re-splitting into a chosen number of relation heads (so teacher and student head counts may differ), from a chosen
//   teacher layer (the paper uses an upper-middle layer for large teachers) and the student's last layer.
// Q, K and V of layer L are computed from the input of layer L (the output of layer L−1), inside the layer.
// Deviation: batches are packed corpus sequences (no padding) as in our other task-agnostic methods; the masks are
// still honoured when a batch has padding.
using Distillery.Models;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Distillation;

/// <summary>Which relations MiniLM transfers.</summary>
public enum MiniLmRelations
{
    /// <summary>MiniLM v1: attention distributions and value-value relations, head by head.</summary>
    V1,
    /// <summary>MiniLMv2: query-query, key-key and value-value relations over re-split relation heads.</summary>
    V2,
}

/// <summary>MiniLM's options.</summary>
public sealed record MiniLmOptions : IDistillMethodOptions<MiniLmOptions>
{
    /// <summary>v1 or v2 relations.</summary>
    public MiniLmRelations Relations { get; init; } = MiniLmRelations.V1;
    /// <summary>v2: number of relation heads both models' Q/K/V are split into (must divide both widths).</summary>
    public int RelationHeads { get; init; } = 4;
    /// <summary>The teacher layer to distil (1-based); null means the last.</summary>
    public int? TeacherLayer { get; init; }
    /// <summary>v1: weight of the value-relation term (eq. 5-6); 0 distils the attention distributions alone (the paper's ablation, Table 5).</summary>
    public double ValueRelationWeight { get; init; } = 1.0;

    /// <summary>Checks the fields (the widths and depth they must fit are checked against the models).</summary>
    public MiniLmOptions Validate()
    {
        if (!Enum.IsDefined(Relations)) throw new ArgumentException($"unknown relations {Relations} (known: v1, v2)");
        if (RelationHeads < 1) throw new ArgumentException($"relation_heads must be at least 1 (got {RelationHeads})");
        if (TeacherLayer is < 1) throw new ArgumentException($"teacher_layer is 1-based (got {TeacherLayer})");
        if (!(ValueRelationWeight >= 0)) throw new ArgumentException($"value_relation_weight must be >= 0 (got {ValueRelationWeight})");
        return this;
    }
}

/// <summary>The relation matrices MiniLM compares.</summary>
public static class MiniLmRelationsMath
{
    /// <summary>
    /// softmax(X Xᵀ / √d) over keys for X [B, h, T, d] (per head), with padded keys masked out: [B, h, T, T].
    /// With X = V this is MiniLM's value relation (v1 eq. 5); with Q, K or V re-split, MiniLMv2's relations.
    /// </summary>
    public static Tensor SelfRelation(Tensor x, Tensor? mask)
    {
        var scores = matmul(x, x.transpose(-1, -2)) / Math.Sqrt(x.shape[^1]);   // [B, h, T, T]
        if (mask is not null) scores = scores + BertModel.AdditiveMask(mask, scores.dtype);
        return nn.functional.softmax(scores, -1);
    }

    /// <summary>[B, h, T, d] heads → concatenated [B, T, h·d] → re-split into <paramref name="heads"/> relation heads [B, r, T, h·d/r].</summary>
    public static Tensor Resplit(Tensor x, int heads)
    {
        long b = x.shape[0], t = x.shape[2], width = x.shape[1] * x.shape[3];
        if (width % heads != 0) throw new ArgumentException($"a width of {width} cannot be split into {heads} relation heads");
        return x.permute(0, 2, 1, 3).reshape(b, t, heads, width / heads).permute(0, 2, 1, 3);
    }
}

/// <summary>MiniLM (v1 or v2) from a masked-LM teacher into a masked-LM student of any depth and width.</summary>
public sealed class MiniLm : IDistillationMethod<MlmBatch>
{
    /// <summary>The registry entry: <c>minilm</c>, on a corpus, into every other teacher layer unless a student is given.</summary>
    public static readonly DistillMethod<MiniLmOptions> Method = new()
    {
        Name = "minilm",
        OptionsKey = "mini_lm",
        Summary = "MiniLM self-attention relation distillation on a corpus (Wang et al. 2020, v1; 2021, v2)",
        DefaultStudent = teacher => StudentInit.EveryOtherLayer(teacher.NumHiddenLayers),
        // The loss reads attention and Q/K/V inside the encoders: neither model's masked-LM head enters it. A teacher
        // without a trained head (a MiniLM-distilled assistant) is fine; the student's head stays as it was built.
        UsesTeacherMlmHead = _ => false,
        LeavesMlmHeadUntrained = _ => "minilm distils self-attention relations only: the head, copied from the teacher or freshly initialised, was never trained with this encoder",
        OnCorpus = (o, inputs) => new MiniLm(inputs.Teacher, (BertForMaskedLM)inputs.BuildStudent(), o),
    };

    private readonly Teacher teacher;
    private readonly BertForMaskedLM student;
    private readonly MiniLmOptions options;
    private readonly int teacherLayer;
    private readonly Dictionary<string, double> terms = [];

    /// <summary>Checks the shapes the chosen relations need and says what to do when they do not fit.</summary>
    public MiniLm(Teacher teacher, BertForMaskedLM student, MiniLmOptions options)
    {
        var t = teacher.Model.Config;
        var s = student.Config;
        if (t.VocabSize != s.VocabSize) throw new ArgumentException($"teacher and student vocabularies differ ({t.VocabSize} vs {s.VocabSize} tokens)");
        teacherLayer = options.TeacherLayer ?? t.NumHiddenLayers;
        if (teacherLayer < 1 || teacherLayer > t.NumHiddenLayers) throw new ArgumentException($"teacher layer {teacherLayer} is out of range 1..{t.NumHiddenLayers}");
        if (s.NumHiddenLayers < 1) throw new ArgumentException("the student needs at least one layer");
        int teacherHeads = t.HeadsInLayer(teacherLayer - 1), studentHeads = s.HeadsInLayer(s.NumHiddenLayers - 1);
        if (options.Relations == MiniLmRelations.V1 && teacherHeads != studentHeads)
            throw new ArgumentException($"MiniLM v1 compares attention head by head, but the teacher layer has {teacherHeads} heads and the student's last layer {studentHeads}; use --relations v2 --relation-heads N (N dividing both widths)");
        if (options.Relations == MiniLmRelations.V2)
        {
            if (options.RelationHeads < 1) throw new ArgumentException($"relation heads must be at least 1 (got {options.RelationHeads})");
            foreach (var (who, width) in new[] { ("teacher", teacherHeads * t.HeadSize), ("student", studentHeads * s.HeadSize) })
                if (width % options.RelationHeads != 0)
                    throw new ArgumentException($"the {who}'s attention width {width} is not divisible by {options.RelationHeads} relation heads");
        }
        this.teacher = teacher;
        this.student = student;
        this.options = options;
    }

    /// <inheritdoc/>
    public BertTaskModel Student => student;

    /// <inheritdoc/>
    public nn.Module Module => student;

    static readonly BertForwardOptions WithAttention = new() { OutputAttentions = true, OutputQueryKeyValue = true };

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(MlmBatch batch)
    {
        var inputs = new BertInputs(tensor(batch.InputIds, [batch.Batch, batch.Length]));
        var t = teacher.Encode(inputs, WithAttention);
        var s = student.Bert.forward(inputs, WithAttention);
        int ti = teacherLayer - 1, si = student.Config.NumHiddenLayers - 1;
        Tensor? mask = inputs.AttentionMask;
        Tensor loss;
        terms.Clear();
        Tensor Term(string name, Tensor kl) { terms[name] = kl.item<float>(); return kl; }
        if (options.Relations == MiniLmRelations.V1)
        {
            // eq. 4: attention transfer; eq. 5–6: value-relation transfer (weighted; 0 = attention alone, the ablation).
            loss = Term("attention_kl", Losses.AttentionKl(s.Attentions![si], t.Attentions![ti], mask));
            if (options.ValueRelationWeight > 0)
                loss = loss + options.ValueRelationWeight * Term("value_relation_kl",
                    Losses.AttentionKl(MiniLmRelationsMath.SelfRelation(s.Values![si], mask), MiniLmRelationsMath.SelfRelation(t.Values![ti], mask), mask));
        }
        else
        {
            int r = options.RelationHeads;
            Tensor Relation(IReadOnlyList<Tensor> xs, int layer) => MiniLmRelationsMath.SelfRelation(MiniLmRelationsMath.Resplit(xs[layer], r), mask);
            loss = Term("query_relation_kl", Losses.AttentionKl(Relation(s.Queries!, si), Relation(t.Queries!, ti), mask))
                 + Term("key_relation_kl", Losses.AttentionKl(Relation(s.Keys!, si), Relation(t.Keys!, ti), mask))
                 + Term("value_relation_kl", Losses.AttentionKl(Relation(s.Values!, si), Relation(t.Values!, ti), mask));
        }
        return (loss, (long)batch.Batch * batch.Length);
    }

    /// <summary>
    /// The last step's KL terms (per head and query position, nats): v1 <c>attention_kl</c> (last-layer attention
    /// distributions) and <c>value_relation_kl</c> (when its weight is on); v2 <c>query_relation_kl</c>,
    /// <c>key_relation_kl</c>, <c>value_relation_kl</c>. The masked-LM predictions are not computed, so there is no
    /// <c>kl</c> over them.
    /// </summary>
    public IReadOnlyDictionary<string, double> LossTerms => terms;
}
