// BERT encoder blocks, mirroring Hugging Face transformers' models/bert/modeling_bert.py (post-LN, absolute positions).
// Field names are the checkpoint's state-dict names (`attention.self.query`, `LayerNorm`, ...), so a transformers
// safetensors file loads with no rename table. Shapes: B batch, T tokens, H hidden, h heads (per layer), d head size,
// F FFN width (per layer).
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Distillery.Models;

/// <summary>The inputs of one forward pass. Only <see cref="InputIds"/> is required.</summary>
/// <param name="InputIds">Token ids [B, T] (int64).</param>
/// <param name="AttentionMask">1 for real tokens, 0 for padding [B, T]; null means all real.</param>
/// <param name="TokenTypeIds">Segment ids [B, T]; null means all 0.</param>
/// <param name="PositionIds">Positions [B, T] or [1, T]; null means 0..T-1.</param>
public sealed record BertInputs(Tensor InputIds, Tensor? AttentionMask = null, Tensor? TokenTypeIds = null, Tensor? PositionIds = null);

/// <summary>
/// What a forward pass should return besides the last hidden state. Methods ask here for what they distil from;
/// nothing is computed or kept that was not asked for.
/// </summary>
public sealed record BertForwardOptions
{
    /// <summary>The default: last hidden state (and pooler output where the model has a pooler) only.</summary>
    public static readonly BertForwardOptions Default = new();

    /// <summary>Embedding output and every layer's output: L+1 tensors [B, T, H].</summary>
    public bool OutputHiddenStates { get; init; }
    /// <summary>Attention probabilities per layer [B, h, T, T] (before attention dropout and head mask).</summary>
    public bool OutputAttentions { get; init; }
    /// <summary>Pre-softmax scores QKᵀ/√d per layer [B, h, T, T], before the padding mask is added (so they stay finite).</summary>
    public bool OutputAttentionScores { get; init; }
    /// <summary>Each layer's queries, keys and values [B, h, T, d], split into heads (MiniLM's relations).</summary>
    public bool OutputQueryKeyValue { get; init; }
    /// <summary>
    /// Optional multiplicative mask on attention probabilities, as transformers' <c>head_mask</c>: one tensor per layer
    /// of shape [h] (1 keeps a head, 0 silences it), or null entries for layers without one.
    /// </summary>
    public IReadOnlyList<Tensor?>? HeadMask { get; init; }
    /// <summary>
    /// Compute attention step by step (scores, mask, softmax, dropout, matmul) even when none of its intermediates is
    /// asked for. By default such a forward uses libtorch's fused scaled_dot_product_attention, the same math in one
    /// kernel; this switch exists for parity checks between the two.
    /// </summary>
    public bool ExplicitAttention { get; init; }
}

/// <summary>Per-layer extras from one attention block (null where not requested).</summary>
public sealed record AttentionOutputs(Tensor? Probabilities, Tensor? Scores, Tensor? Query, Tensor? Key, Tensor? Value);

/// <summary>The output of one encoder layer.</summary>
/// <param name="Hidden">The layer's output [B, T, H].</param>
/// <param name="Attention">Requested attention extras.</param>
public sealed record LayerOutput(Tensor Hidden, AttentionOutputs Attention);

/// <summary>Encoder outputs; the lists are null unless requested through <see cref="BertForwardOptions"/>.</summary>
public sealed class EncoderOutput
{
    /// <summary>Output of the last layer [B, T, H].</summary>
    public required Tensor LastHiddenState { get; init; }
    /// <summary>tanh(dense(h[CLS])) [B, H], for models with a pooler.</summary>
    public Tensor? PoolerOutput { get; init; }
    /// <summary>L+1 tensors [B, T, H]: index 0 is the embedding output, index i the output of layer i.</summary>
    public IReadOnlyList<Tensor>? HiddenStates { get; init; }
    /// <summary>L tensors [B, h, T, T] of attention probabilities.</summary>
    public IReadOnlyList<Tensor>? Attentions { get; init; }
    /// <summary>L tensors [B, h, T, T] of unmasked pre-softmax scores.</summary>
    public IReadOnlyList<Tensor>? AttentionScores { get; init; }
    /// <summary>L tensors [B, h, T, d].</summary>
    public IReadOnlyList<Tensor>? Queries { get; init; }
    /// <summary>L tensors [B, h, T, d].</summary>
    public IReadOnlyList<Tensor>? Keys { get; init; }
    /// <summary>L tensors [B, h, T, d].</summary>
    public IReadOnlyList<Tensor>? Values { get; init; }
    /// <summary>
    /// The 0/1 attention mask the encoder ran with [B, T] (the caller's tensor, not a copy), or null when every token was
    /// real. Heads that pool over tokens (<see cref="BertForSentenceEmbedding"/>) read it.
    /// </summary>
    public Tensor? AttentionMask { get; init; }
}

internal static class Activations
{
    public static Tensor Apply(HiddenActivation act, Tensor x) => act switch
    {
        HiddenActivation.Gelu => nn.functional.gelu(x),                       // exact: x Φ(x) with erf
        HiddenActivation.GeluTanh => nn.functional.gelu(x, GELU.Approximate.tanh),
        HiddenActivation.Relu => nn.functional.relu(x),
        _ => nn.functional.silu(x),
    };
}

/// <summary>
/// A module that writes the residual stream (an H-wide output) and can be told to keep only some hidden dimensions:
/// the "masked model" of hidden-dimension pruning. Set model-wide by <see cref="BertTaskModel.SetHiddenMask"/>; the mask
/// is not a parameter or buffer, so it is never saved.
/// </summary>
public interface IHiddenMaskable
{
    /// <summary>The hidden dimensions kept (ascending indices into H), or null for all.</summary>
    long[]? KeptHidden { get; set; }
}

/// <summary>
/// LayerNorm and output masking over the kept hidden dimensions. A hidden-pruned model normalises over its H' dimensions;
/// the masked full-width model must do the same to compute the same function, so its LayerNorm takes mean and variance
/// over the kept dimensions only (the pruned ones would otherwise shift both) and writes exact zeros to the pruned ones.
/// With that, every consumer of the residual stream reads zeros from pruned dimensions, whatever its weights there.
/// </summary>
public static class HiddenMasking
{
    /// <summary>LayerNorm of [.., H] over all H, or, with <paramref name="kept"/>, over those dimensions only (zeros elsewhere).</summary>
    public static Tensor Norm(LayerNorm norm, Tensor x, long[]? kept, double eps)
    {
        if (kept is null) return norm.forward(x);
        using var scope = NewDisposeScope();
        var index = tensor(kept, device: x.device);
        var normed = nn.functional.layer_norm(x.index_select(-1, index), [kept.Length], norm.weight!.index_select(0, index), norm.bias!.index_select(0, index), eps);   // [.., H']
        return zeros_like(x).index_copy(x.dim() - 1, index, normed).MoveToOuterDisposeScope();                                                            // [.., H]
    }

    /// <summary>Zeroes the pruned dimensions of [.., H] (the pooler's output, which no LayerNorm follows).</summary>
    public static Tensor Keep(Tensor x, long[]? kept)
    {
        if (kept is null) return x;
        using var scope = NewDisposeScope();
        var index = tensor(kept, device: x.device);
        return zeros_like(x).index_copy(x.dim() - 1, index, x.index_select(-1, index)).MoveToOuterDisposeScope();
    }
}

/// <summary>Word + position + token-type embeddings, then LayerNorm and dropout (<c>bert.embeddings</c>).</summary>
public sealed class BertEmbeddings : nn.Module, IHiddenMaskable
{
    private readonly Embedding word_embeddings;
    private readonly Embedding position_embeddings;
    private readonly Embedding token_type_embeddings;
    private readonly LayerNorm LayerNorm;
    private readonly FastDropout dropout;

    /// <summary>The word-embedding table [V, H]; the MLM decoder shares it.</summary>
    public Parameter WordEmbeddingWeight => word_embeddings.weight!;
    /// <summary>Rows of the position table: the longest sequence accepted.</summary>
    public long MaxPositions => position_embeddings.weight!.shape[0];
    /// <inheritdoc/>
    public long[]? KeptHidden { get; set; }
    private readonly double eps;
    /// <summary>
    /// Quantization-aware training: when on, every looked-up word embedding is fake-quantized to int8 with its row's
    /// scale, as the int8 exporter stores the table (see <see cref="Numerics.FakeQuant.EmbeddingRows"/>). Default off.
    /// </summary>
    public bool FakeQuantizeWords { get; set; }

    public BertEmbeddings(BertConfig config) : base(nameof(BertEmbeddings))
    {
        eps = config.LayerNormEps;
        word_embeddings = nn.Embedding(config.VocabSize, config.HiddenSize);
        position_embeddings = nn.Embedding(config.MaxPositionEmbeddings, config.HiddenSize);
        token_type_embeddings = nn.Embedding(config.TypeVocabSize, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, eps: config.LayerNormEps);
        dropout = new FastDropout(config.HiddenDropoutProb);
        RegisterComponents();
    }

    /// <summary>[B, T] ids → [B, T, H].</summary>
    public Tensor forward(Tensor inputIds, Tensor? tokenTypeIds = null, Tensor? positionIds = null)
    {
        long seqLength = inputIds.shape[1];
        if (seqLength > MaxPositions)
            throw new ArgumentException($"input has {seqLength} tokens but the model has only {MaxPositions} positions (max_position_embeddings)");
        using var scope = NewDisposeScope();
        positionIds ??= arange(seqLength, dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0);   // [1, T]
        tokenTypeIds ??= zeros_like(inputIds);
        var words = word_embeddings.forward(inputIds);                                           // [B, T, H]
        if (FakeQuantizeWords) words = Numerics.FakeQuant.EmbeddingRows(words);
        var sum = words + token_type_embeddings.forward(tokenTypeIds) + position_embeddings.forward(positionIds);
        return dropout.forward(HiddenMasking.Norm(LayerNorm, sum, KeptHidden, eps)).MoveToOuterDisposeScope();
    }
}

/// <summary>Multi-head self-attention projections and softmax (<c>attention.self</c>).</summary>
public sealed class BertSelfAttention : nn.Module
{
    private readonly Dense query;
    private readonly Dense key;
    private readonly Dense value;
    private readonly FastDropout dropout;

    /// <summary>Heads in this layer (0 if all were pruned).</summary>
    public int NumHeads { get; }
    /// <summary>Width d of one head.</summary>
    public int HeadSize { get; }

    public BertSelfAttention(BertConfig config, int numHeads) : base(nameof(BertSelfAttention))
    {
        NumHeads = numHeads;
        HeadSize = config.HeadSize;
        query = new Dense(config.HiddenSize, numHeads * HeadSize);
        key = new Dense(config.HiddenSize, numHeads * HeadSize);
        value = new Dense(config.HiddenSize, numHeads * HeadSize);
        dropout = new FastDropout(config.AttentionProbsDropoutProb);
        RegisterComponents();
    }

    /// <summary>[B, T, h·d] → [B, h, T, d].</summary>
    private Tensor SplitHeads(Tensor x) => x.view(x.shape[0], x.shape[1], NumHeads, HeadSize).permute(0, 2, 1, 3);

    /// <summary>
    /// Returns the context [B, T, h·d] and the requested extras. <paramref name="additiveMask"/> is [B, 1, 1, T]:
    /// 0 on real keys and float.MinValue on padding, added to the scores as transformers 4.30 does.
    /// </summary>
    public (Tensor Context, AttentionOutputs Extras) forward(Tensor hidden, Tensor? additiveMask, Tensor? headMask, BertForwardOptions options)
    {
        var q = SplitHeads(query.forward(hidden));                        // [B, h, T, d]
        var k = SplitHeads(key.forward(hidden));                          // [B, h, T, d]
        var v = SplitHeads(value.forward(hidden));                        // [B, h, T, d]
        bool extras = options.OutputAttentions || options.OutputAttentionScores || options.OutputQueryKeyValue;
        // Attention dropout in training takes the explicit path: libtorch's CPU kernel has no fused dropout (it falls
        // back to the same explicit math) and would draw the [B, h, T, T] mask serially (FastDropout says why that matters).
        bool attentionDropout = training && dropout.Probability > 0;
        if (!extras && headMask is null && !options.ExplicitAttention && NumHeads > 0 && !attentionDropout)
        {
            // libtorch's fused kernel: softmax(QKᵀ/√d + mask)·V in one op (flash-style on CPU), without materialising
            // the [B, h, T, T] scores and probabilities as separate tensors; same math.
            var fused = nn.functional.scaled_dot_product_attention(q, k, v, additiveMask, 0.0, false);   // [B, h, T, d]
            return (fused.permute(0, 2, 1, 3).reshape(hidden.shape[0], hidden.shape[1], NumHeads * HeadSize),
                new AttentionOutputs(null, null, null, null, null));
        }
        Tensor Scores() => matmul(q, k.transpose(-1, -2)) / Math.Sqrt(HeadSize); // QKᵀ/√d, [B, h, T, T]
        Tensor? scores = null;
        Tensor masked;                                                   // QKᵀ/√d + mask, [B, h, T, T]
        if (additiveMask is null)
            masked = scores = Scores();
        else
        {
            // mask + α·Q·Kᵀ with α = 1/√d in one GEMM (baddbmm), batch B·h: the scale and the mask add happen inside the
            // GEMM instead of as two more passes over the [B, h, T, T] scores (plus the division's backward pass),
            // which matters on this path in training (attention dropout); every explicit caller gets these same bits.
            long b = hidden.shape[0], t = hidden.shape[1];
            var mask3 = additiveMask.expand(b, NumHeads, additiveMask.shape[2], t).reshape(b * NumHeads, additiveMask.shape[2], t); // [B·h, 1 or T, T]
            masked = Baddbmm.Apply(mask3, q.reshape(b * NumHeads, t, HeadSize), k.reshape(b * NumHeads, t, HeadSize).transpose(1, 2),
                alpha: (float)(1 / Math.Sqrt(HeadSize))).view(b, NumHeads, t, t);
            // The unmasked scores are a diagnostic only this option asks for: one more GEMM, not on the training path.
            if (options.OutputAttentionScores) scores = Scores();
        }
        var probs = nn.functional.softmax(masked, dim: -1);              // [B, h, T, T]
        var attended = dropout.forward(probs);
        if (headMask is not null) attended = attended * headMask.view(1, -1, 1, 1);
        var context = matmul(attended, v);                               // [B, h, T, d]
        context = context.permute(0, 2, 1, 3).reshape(hidden.shape[0], hidden.shape[1], NumHeads * HeadSize); // [B, T, h·d]
        bool qkv = options.OutputQueryKeyValue;
        return (context, new AttentionOutputs(
            options.OutputAttentions ? probs : null,
            options.OutputAttentionScores ? scores : null,
            qkv ? q : null, qkv ? k : null, qkv ? v : null));
    }

    /// <summary>Query projection (pruning and initialisation read and write it).</summary>
    public Dense Query => query;
    /// <summary>Key projection.</summary>
    public Dense Key => key;
    /// <summary>Value projection.</summary>
    public Dense Value => value;
}

/// <summary>Attention output projection, dropout, residual and LayerNorm (<c>attention.output</c>).</summary>
public sealed class BertSelfOutput : nn.Module, IHiddenMaskable
{
    private readonly double eps;
    private readonly Dense dense;
    private readonly LayerNorm LayerNorm;
    private readonly FastDropout dropout;

    public BertSelfOutput(BertConfig config, int numHeads) : base(nameof(BertSelfOutput))
    {
        eps = config.LayerNormEps;
        dense = new Dense(numHeads * config.HeadSize, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, eps: config.LayerNormEps);
        dropout = new FastDropout(config.HiddenDropoutProb);
        RegisterComponents();
    }

    /// <summary>Post-LN: LayerNorm(dropout(dense(context)) + residual).</summary>
    public Tensor forward(Tensor context, Tensor residual) => HiddenMasking.Norm(LayerNorm, dropout.forward(dense.forward(context)) + residual, KeptHidden, eps);

    /// <summary>Output projection [H, h·d].</summary>
    public Dense Dense => dense;
    /// <inheritdoc/>
    public long[]? KeptHidden { get; set; }
}

/// <summary>Self-attention block (<c>attention</c>): <c>self</c> then <c>output</c>.</summary>
public sealed class BertAttention : nn.Module
{
    private readonly BertSelfAttention self;
    private readonly BertSelfOutput output;

    public BertAttention(BertConfig config, int numHeads) : base(nameof(BertAttention))
    {
        self = new BertSelfAttention(config, numHeads);
        output = new BertSelfOutput(config, numHeads);
        RegisterComponents();
    }

    /// <summary>Self-attention projections.</summary>
    public BertSelfAttention Self => self;
    /// <summary>Output projection and LayerNorm.</summary>
    public BertSelfOutput Output => output;

    public (Tensor Hidden, AttentionOutputs Extras) forward(Tensor hidden, Tensor? additiveMask, Tensor? headMask, BertForwardOptions options)
    {
        var (context, extras) = self.forward(hidden, additiveMask, headMask, options);
        return (output.forward(context, hidden), extras);
    }
}

/// <summary>First FFN projection and activation (<c>intermediate</c>): [B, T, H] → [B, T, F].</summary>
public sealed class BertIntermediate : nn.Module<Tensor, Tensor>
{
    private readonly Dense dense;
    private readonly HiddenActivation activation;

    public BertIntermediate(BertConfig config, int width) : base(nameof(BertIntermediate))
    {
        dense = new Dense(config.HiddenSize, width);
        activation = config.HiddenAct;
        RegisterComponents();
    }

    /// <summary>FFN input projection [F, H].</summary>
    public Dense Dense => dense;

    public override Tensor forward(Tensor hidden) => Activations.Apply(activation, dense.forward(hidden));
}

/// <summary>Second FFN projection, dropout, residual and LayerNorm (<c>output</c>): [B, T, F] → [B, T, H].</summary>
public sealed class BertOutput : nn.Module, IHiddenMaskable
{
    private readonly double eps;
    private readonly Dense dense;
    private readonly LayerNorm LayerNorm;
    private readonly FastDropout dropout;

    public BertOutput(BertConfig config, int width) : base(nameof(BertOutput))
    {
        eps = config.LayerNormEps;
        dense = new Dense(width, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, eps: config.LayerNormEps);
        dropout = new FastDropout(config.HiddenDropoutProb);
        RegisterComponents();
    }

    /// <summary>FFN output projection [H, F].</summary>
    public Dense Dense => dense;
    /// <inheritdoc/>
    public long[]? KeptHidden { get; set; }

    public Tensor forward(Tensor intermediate, Tensor residual) => HiddenMasking.Norm(LayerNorm, dropout.forward(dense.forward(intermediate)) + residual, KeptHidden, eps);
}

/// <summary>One post-LN Transformer layer (<c>bert.encoder.layer.i</c>): attention then FFN, each with residual + LayerNorm.</summary>
public sealed class BertLayer : nn.Module
{
    private readonly BertAttention attention;
    private readonly BertIntermediate intermediate;
    private readonly BertOutput output;

    /// <summary>A layer with <paramref name="numHeads"/> heads and FFN width <paramref name="ffnWidth"/> (either may be 0).</summary>
    public BertLayer(BertConfig config, int numHeads, int ffnWidth) : base(nameof(BertLayer))
    {
        attention = new BertAttention(config, numHeads);
        intermediate = new BertIntermediate(config, ffnWidth);
        output = new BertOutput(config, ffnWidth);
        RegisterComponents();
    }

    /// <summary>Attention block.</summary>
    public BertAttention Attention => attention;
    /// <summary>FFN input half.</summary>
    public BertIntermediate Intermediate => intermediate;
    /// <summary>FFN output half.</summary>
    public BertOutput Output => output;
    /// <summary>Heads in this layer.</summary>
    public int NumHeads => attention.Self.NumHeads;
    /// <summary>FFN width of this layer.</summary>
    public int FfnWidth => (int)intermediate.Dense.OutFeatures;

    /// <summary>[B, T, H] → [B, T, H].</summary>
    public LayerOutput forward(Tensor hidden, Tensor? additiveMask, Tensor? headMask, BertForwardOptions options)
    {
        var (attended, extras) = attention.forward(hidden, additiveMask, headMask, options);
        var ffn = output.forward(intermediate.forward(attended), attended);
        return new LayerOutput(ffn, extras);
    }
}

/// <summary>The stack of layers (<c>bert.encoder</c>). Layers can be replaced from outside (a method may swap groups of them).</summary>
public sealed class BertEncoder : nn.Module
{
    private ModuleList<BertLayer> layer;

    public BertEncoder(BertConfig config) : base(nameof(BertEncoder))
    {
        layer = new ModuleList<BertLayer>(Enumerable.Range(0, config.NumHiddenLayers)
            .Select(i => new BertLayer(config, config.HeadsInLayer(i), config.IntermediateSizeOf(i))).ToArray());
        RegisterComponents();
    }

    /// <summary>The layers, in order.</summary>
    public IReadOnlyList<BertLayer> Layers => layer.ToArray();

    /// <summary>
    /// Replaces the whole stack. The new layers become this encoder's registered children (parameters, train/eval,
    /// state dict <c>layer.i.*</c>); the old ones are not disposed, so a caller may keep using them.
    /// </summary>
    public void ReplaceLayers(IEnumerable<BertLayer> layers)
    {
        ClearModules();   // the encoder's only child is the list; unregister it so the new list can take the name
        layer = new ModuleList<BertLayer>(layers.ToArray());
        register_module(nameof(layer), layer);
    }

    /// <summary>Runs the layers on the embedding output [B, T, H]; <paramref name="additiveMask"/> is [B, 1, 1, T].</summary>
    public EncoderOutput forward(Tensor embeddings, Tensor? additiveMask, BertForwardOptions options)
    {
        var hiddenStates = options.OutputHiddenStates ? new List<Tensor> { embeddings } : null;
        var attentions = options.OutputAttentions ? new List<Tensor>() : null;
        var scores = options.OutputAttentionScores ? new List<Tensor>() : null;
        var queries = options.OutputQueryKeyValue ? new List<Tensor>() : null;
        var keys = options.OutputQueryKeyValue ? new List<Tensor>() : null;
        var values = options.OutputQueryKeyValue ? new List<Tensor>() : null;
        if (options.HeadMask != null && options.HeadMask.Count != layer.Count)
            throw new ArgumentException($"head mask has {options.HeadMask.Count} entries for {layer.Count} layers");
        var hidden = embeddings;
        for (int i = 0; i < layer.Count; i++)
        {
            // One dispose scope per layer: a layer's temporaries (Q, K, V, scores, FFN activations) are freed as soon as
            // the layer is done; autograd keeps what backward needs. Only the outputs asked for leave the scope.
            using var scope = NewDisposeScope();
            var result = layer[i].forward(hidden, additiveMask, options.HeadMask?[i], options);
            hidden = result.Hidden.MoveToOuterDisposeScope();
            hiddenStates?.Add(hidden);
            attentions?.Add(result.Attention.Probabilities!.MoveToOuterDisposeScope());
            scores?.Add(result.Attention.Scores!.MoveToOuterDisposeScope());
            queries?.Add(result.Attention.Query!.MoveToOuterDisposeScope());
            keys?.Add(result.Attention.Key!.MoveToOuterDisposeScope());
            values?.Add(result.Attention.Value!.MoveToOuterDisposeScope());
        }
        return new EncoderOutput
        {
            LastHiddenState = hidden, HiddenStates = hiddenStates, Attentions = attentions, AttentionScores = scores,
            Queries = queries, Keys = keys, Values = values,
        };
    }
}

/// <summary>tanh(dense(h[CLS])) (<c>bert.pooler</c>).</summary>
public sealed class BertPooler : nn.Module<Tensor, Tensor>, IHiddenMaskable
{
    private readonly Dense dense;

    public BertPooler(BertConfig config) : base(nameof(BertPooler))
    {
        dense = new Dense(config.HiddenSize, config.HiddenSize);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public long[]? KeptHidden { get; set; }

    /// <summary>[B, T, H] → [B, H].</summary>
    public override Tensor forward(Tensor hidden) => HiddenMasking.Keep(tanh(dense.forward(hidden.select(1, 0))), KeptHidden);
}

/// <summary>Embeddings, encoder and (optionally) pooler: transformers' <c>BertModel</c>, the <c>bert.</c> prefix.</summary>
public sealed class BertModel : nn.Module
{
    private readonly BertEmbeddings embeddings;
    private readonly BertEncoder encoder;
    private readonly BertPooler? pooler;

    public BertModel(BertConfig config, bool addPoolingLayer) : base(nameof(BertModel))
    {
        embeddings = new BertEmbeddings(config);
        encoder = new BertEncoder(config);
        pooler = addPoolingLayer ? new BertPooler(config) : null;
        RegisterComponents();
    }

    /// <summary>Embedding block.</summary>
    public BertEmbeddings Embeddings => embeddings;
    /// <summary>Layer stack.</summary>
    public BertEncoder Encoder => encoder;
    /// <summary>Pooler, or null for heads that do not use it (MLM, QA), as in transformers.</summary>
    public BertPooler? Pooler => pooler;

    /// <summary>
    /// The additive attention mask [B, 1, 1, T]: 0 where <paramref name="attentionMask"/> is 1, float.MinValue where it
    /// is 0 (transformers 4.30's <c>get_extended_attention_mask</c>), so padded keys get exactly zero probability.
    /// </summary>
    public static Tensor AdditiveMask(Tensor attentionMask, ScalarType dtype) =>
        (1.0 - attentionMask.unsqueeze(1).unsqueeze(2).to(dtype)) * float.MinValue;

    /// <summary>Embeddings → layers → pooler.</summary>
    public EncoderOutput forward(BertInputs inputs, BertForwardOptions? options = null)
    {
        options ??= BertForwardOptions.Default;
        if (inputs.InputIds.dim() != 2) throw new ArgumentException($"input_ids must be [batch, tokens], got [{string.Join(", ", inputs.InputIds.shape)}]");
        var embedded = embeddings.forward(inputs.InputIds, inputs.TokenTypeIds, inputs.PositionIds);   // [B, T, H]
        var mask = inputs.AttentionMask is null ? null : AdditiveMask(inputs.AttentionMask, embedded.dtype);   // [B, 1, 1, T]
        EncoderOutput output;
        try { output = encoder.forward(embedded, mask, options); }
        finally { mask?.Dispose(); }
        return new EncoderOutput
        {
            LastHiddenState = output.LastHiddenState, PoolerOutput = pooler?.forward(output.LastHiddenState),
            HiddenStates = output.HiddenStates, Attentions = output.Attentions, AttentionScores = output.AttentionScores,
            Queries = output.Queries, Keys = output.Keys, Values = output.Values, AttentionMask = inputs.AttentionMask,
        };
    }
}
