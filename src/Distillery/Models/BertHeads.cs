// Task heads on top of BertModel, mirroring transformers' BertForMaskedLM, BertForSequenceClassification and
// BertForQuestionAnswering (same field names, same use of the pooler).
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Distillery.Models;

/// <summary>Which head a model carries; each maps to one transformers class.</summary>
public enum BertTask
{
    /// <summary><c>BertForMaskedLM</c>: logits over the vocabulary at every position.</summary>
    MaskedLM,
    /// <summary><c>BertForSequenceClassification</c>: pooler + classifier (classification or regression).</summary>
    SequenceClassification,
    /// <summary><c>BertForQuestionAnswering</c>: start and end logits per token.</summary>
    QuestionAnswering,
    /// <summary>
    /// A sentence-transformers model: <c>BertModel</c> + pooling (attention-masked mean by default) + L2 normalisation;
    /// one vector per text (<see cref="BertForSentenceEmbedding"/>).
    /// </summary>
    SentenceEmbedding,
}

/// <summary>Mapping between <see cref="BertTask"/> and transformers' class names.</summary>
public static class BertTasks
{
    /// <summary>The transformers class for a task.</summary>
    public static string ArchitectureName(BertTask task) => task switch
    {
        BertTask.MaskedLM => "BertForMaskedLM",
        BertTask.SequenceClassification => "BertForSequenceClassification",
        BertTask.QuestionAnswering => "BertForQuestionAnswering",
        // sentence-transformers saves the bare encoder; the pooling lives in its own module folder (SentenceTransformersLayout).
        _ => "BertModel",
    };

    /// <summary>
    /// The task of a transformers class name, or null for classes Distillery has no head for. A bare <c>BertModel</c> is
    /// a sentence embedding: the encoder alone, pooled by mean and normalised as sentence-transformers pools a plain
    /// transformers model (and as <see cref="ArchitectureName"/> writes a sentence-embedding model); read as a masked-LM
    /// model it would get a random head, and `distillery extract` of all-MiniLM-L6-v2 as imported made one.
    /// </summary>
    public static BertTask? FromArchitecture(string name) => name switch
    {
        "BertForMaskedLM" or "BertForPreTraining" or "BertLMHeadModel" => BertTask.MaskedLM,
        "BertForSequenceClassification" => BertTask.SequenceClassification,
        "BertForQuestionAnswering" => BertTask.QuestionAnswering,
        "BertModel" => BertTask.SentenceEmbedding,
        _ => null,
    };
}

/// <summary>A head's output.</summary>
/// <param name="Encoder">The encoder outputs it was computed from (hidden states, attentions... as requested).</param>
/// <param name="Logits">MLM [B, T, V]; classification [B, C]; regression [B, 1]; QA [B, T, 2] (start, end); sentence embedding [B, H].</param>
public sealed record TaskOutput(EncoderOutput Encoder, Tensor Logits)
{
    /// <summary>QA start logits [B, T].</summary>
    public Tensor StartLogits => Logits.select(-1, 0);
    /// <summary>QA end logits [B, T].</summary>
    public Tensor EndLogits => Logits.select(-1, 1);
}

/// <summary>
/// A BERT with one task head: the type every trainer, method and exporter works with. The encoder is
/// <see cref="Bert"/>; <see cref="Head"/> maps encoder outputs to logits, so methods that run the encoder their own way
/// (swapping layers, say) can still apply the head.
/// </summary>
public abstract class BertTaskModel : nn.Module
{
    /// <summary>The configuration this model was built from.</summary>
    public BertConfig Config { get; }
    /// <summary>The head this model carries.</summary>
    public abstract BertTask Task { get; }
    /// <summary>The encoder (<c>bert.*</c> in the state dict).</summary>
    public abstract BertModel Bert { get; }

    protected BertTaskModel(BertConfig config, string name) : base(name) => Config = config;

    /// <summary>Encoder outputs → logits.</summary>
    public abstract Tensor Head(EncoderOutput encoder);

    /// <summary>Full forward pass.</summary>
    public TaskOutput forward(BertInputs inputs, BertForwardOptions? options = null)
    {
        var encoder = Bert.forward(inputs, options);
        return new TaskOutput(encoder, Head(encoder));
    }

    /// <summary>
    /// Keys that transformers ties to other parameters and leaves out of saved checkpoints
    /// (the MLM decoder shares the word embeddings and the prediction bias).
    /// </summary>
    public virtual IReadOnlyCollection<string> TiedKeys => [];

    /// <summary>
    /// Restricts every LayerNorm (and the pooler's output) to the hidden dimensions <paramref name="keep"/> marks
    /// (see <see cref="HiddenMasking"/>): with the pruned dimensions' weights zeroed too, this is the masked model that a
    /// hidden-pruned model physically equals. Null (or all true) restores the full width. Not saved with the model.
    /// </summary>
    public void SetHiddenMask(bool[]? keep)
    {
        if (keep != null && keep.Length != Config.HiddenSize)
            throw new ArgumentException($"hidden mask has {keep.Length} entries for hidden size {Config.HiddenSize}");
        long[]? kept = keep == null || keep.All(k => k) ? null : keep.Select((k, i) => (k, (long)i)).Where(x => x.k).Select(x => x.Item2).ToArray();
        foreach (var module in modules())
            if (module is IHiddenMaskable maskable) maskable.KeptHidden = kept;
    }

    /// <summary>Sets the matmul precision of every dense layer (see <see cref="ComputePrecision"/>).</summary>
    public void SetPrecision(ComputePrecision precision) => SetPrecision(this, precision);

    /// <summary>
    /// Sets the matmul precision of every <see cref="IPrecisionSwitchable"/> module under <paramref name="root"/>.
    /// <see cref="ComputePrecision.Auto"/> is refused: resolve it first (<see cref="ComputePrecisions.ResolveForRun"/>).
    /// </summary>
    public static void SetPrecision(nn.Module root, ComputePrecision precision)
    {
        if (precision == ComputePrecision.Auto)
            throw new ArgumentException("precision auto must be resolved to fp32 or bf16 before it is set on a model (ComputePrecisions.ResolveForRun)", nameof(precision));
        foreach (var module in root.modules())
            if (module is IPrecisionSwitchable switchable) switchable.Precision = precision;
    }

    /// <summary>Creates a model with randomly initialised weights (BERT init: N(0, initializer_range), zero biases).</summary>
    public static BertTaskModel Create(BertConfig config, BertTask task)
    {
        config.Validate();
        BertTaskModel model = task switch
        {
            BertTask.MaskedLM => new BertForMaskedLM(config),
            BertTask.SequenceClassification => new BertForSequenceClassification(config),
            BertTask.QuestionAnswering => new BertForQuestionAnswering(config),
            _ => new BertForSentenceEmbedding(config),
        };
        BertInit.InitializeAll(model, config);
        return model;
    }
}

/// <summary>BERT's weight initialisation (transformers' <c>_init_weights</c>).</summary>
public static class BertInit
{
    /// <summary>Initialises every parameter of <paramref name="module"/> and its children.</summary>
    public static void InitializeAll(nn.Module module, BertConfig config)
    {
        using var _ = no_grad();
        foreach (var m in module.modules()) Initialize(m, config);
    }

    /// <summary>Initialises one module's own parameters: dense and embedding weights N(0, σ), biases 0, LayerNorm 1/0.</summary>
    public static void Initialize(nn.Module module, BertConfig config)
    {
        using var _ = no_grad();
        double std = config.InitializerRange;
        switch (module)
        {
            case Dense dense:
                nn.init.normal_(dense.Weight, 0, std);
                dense.Bias?.zero_();
                break;
            case Embedding embedding:
                nn.init.normal_(embedding.weight!, 0, std);
                // transformers zeroes the padding row of the word embeddings; position/type tables have no padding id.
                if (embedding.weight!.shape[0] == config.VocabSize && config.PadTokenId < embedding.weight.shape[0])
                    embedding.weight[config.PadTokenId].zero_();
                break;
            case LayerNorm norm:
                norm.weight!.fill_(1.0);
                norm.bias!.zero_();
                break;
            case BertLMPredictionHead head:
                head.Bias.zero_();
                break;
        }
    }
}

/// <summary>dense → activation → LayerNorm before the vocabulary projection (<c>cls.predictions.transform</c>).</summary>
public sealed class BertPredictionHeadTransform : nn.Module<Tensor, Tensor>, IHiddenMaskable
{
    private readonly Dense dense;
    private readonly double eps;
    private readonly LayerNorm LayerNorm;
    private readonly HiddenActivation activation;

    public BertPredictionHeadTransform(BertConfig config) : base(nameof(BertPredictionHeadTransform))
    {
        dense = new Dense(config.HiddenSize, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, eps: config.LayerNormEps);
        activation = config.HiddenAct;
        eps = config.LayerNormEps;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public long[]? KeptHidden { get; set; }

    public override Tensor forward(Tensor hidden) => HiddenMasking.Norm(LayerNorm, Activations.Apply(activation, dense.forward(hidden)), KeptHidden, eps);
}

/// <summary>
/// The MLM prediction head (<c>cls.predictions</c>): transform, then a decoder tied to the word embeddings plus a
/// per-token bias. The decoder weight is not a parameter of its own; it is passed in from the embeddings.
/// </summary>
public sealed class BertLMPredictionHead : nn.Module, IPrecisionSwitchable
{
    private readonly BertPredictionHeadTransform transform;
    private readonly Parameter bias;

    public BertLMPredictionHead(BertConfig config) : base(nameof(BertLMPredictionHead))
    {
        transform = new BertPredictionHeadTransform(config);
        bias = new Parameter(zeros(config.VocabSize));
        RegisterComponents();
    }

    /// <summary>The output bias [V] (<c>cls.predictions.bias</c>, tied to <c>cls.predictions.decoder.bias</c>).</summary>
    public Parameter Bias => bias;
    /// <inheritdoc/>
    public ComputePrecision Precision { get; set; }

    /// <summary>[.., H] → [.., V] using the word-embedding table [V, H] as decoder weight.</summary>
    public Tensor forward(Tensor hidden, Tensor wordEmbeddings) => Dense.Linear(transform.forward(hidden), wordEmbeddings, bias, Precision);
}

/// <summary><c>cls</c> of BertForMaskedLM: only the MLM head.</summary>
public sealed class BertOnlyMLMHead : nn.Module
{
    private readonly BertLMPredictionHead predictions;

    public BertOnlyMLMHead(BertConfig config) : base(nameof(BertOnlyMLMHead))
    {
        predictions = new BertLMPredictionHead(config);
        RegisterComponents();
    }

    public Tensor forward(Tensor hidden, Tensor wordEmbeddings) => predictions.forward(hidden, wordEmbeddings);
}

/// <summary>transformers' <c>BertForMaskedLM</c> (no pooler).</summary>
public sealed class BertForMaskedLM : BertTaskModel
{
    private readonly BertModel bert;
    private readonly BertOnlyMLMHead cls;

    public BertForMaskedLM(BertConfig config) : base(config, nameof(BertForMaskedLM))
    {
        bert = new BertModel(config, addPoolingLayer: false);
        cls = new BertOnlyMLMHead(config);
        RegisterComponents();
    }

    public override BertTask Task => BertTask.MaskedLM;
    public override BertModel Bert => bert;
    public override IReadOnlyCollection<string> TiedKeys => ["cls.predictions.decoder.weight", "cls.predictions.decoder.bias"];

    /// <summary>[B, T, H] → [B, T, V].</summary>
    public override Tensor Head(EncoderOutput encoder) => cls.forward(encoder.LastHiddenState, bert.Embeddings.WordEmbeddingWeight);

    /// <summary>MLM logits for selected hidden states only ([N, H] → [N, V]): avoids the [B, T, V] tensor in training.</summary>
    public Tensor PredictTokens(Tensor hidden) => cls.forward(hidden, bert.Embeddings.WordEmbeddingWeight);

    /// <summary>The MLM head (<c>cls.*</c>: transform dense, LayerNorm, output bias; the decoder is the tied word embeddings).</summary>
    public nn.Module MlmHead => cls;
}

/// <summary>transformers' <c>BertForSequenceClassification</c>: pooler → dropout → classifier.</summary>
public sealed class BertForSequenceClassification : BertTaskModel
{
    private readonly BertModel bert;
    private readonly FastDropout dropout;
    private readonly Dense classifier;

    public BertForSequenceClassification(BertConfig config) : base(config, nameof(BertForSequenceClassification))
    {
        bert = new BertModel(config, addPoolingLayer: true);
        dropout = new FastDropout(config.ClassifierDropout ?? config.HiddenDropoutProb);
        classifier = new Dense(config.HiddenSize, config.NumLabels);
        RegisterComponents();
    }

    public override BertTask Task => BertTask.SequenceClassification;
    public override BertModel Bert => bert;

    /// <summary>[B, H] pooled → [B, C] (C = 1 for regression).</summary>
    public override Tensor Head(EncoderOutput encoder) => classifier.forward(dropout.forward(encoder.PoolerOutput!));
}

/// <summary>transformers' <c>BertForQuestionAnswering</c>: a [2, H] projection of every token (no pooler).</summary>
public sealed class BertForQuestionAnswering : BertTaskModel
{
    private readonly BertModel bert;
    private readonly Dense qa_outputs;

    public BertForQuestionAnswering(BertConfig config) : base(config, nameof(BertForQuestionAnswering))
    {
        bert = new BertModel(config, addPoolingLayer: false);
        qa_outputs = new Dense(config.HiddenSize, 2);
        RegisterComponents();
    }

    public override BertTask Task => BertTask.QuestionAnswering;
    public override BertModel Bert => bert;

    /// <summary>[B, T, H] → [B, T, 2] (start, end).</summary>
    public override Tensor Head(EncoderOutput encoder) => qa_outputs.forward(encoder.LastHiddenState);
}
