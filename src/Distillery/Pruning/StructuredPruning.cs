// Structured pruning that really shrinks the model: attention heads (their Q/K/V rows and output-projection columns)
// and FFN neurons (their intermediate row and output column) are removed from the weight matrices, so the result is an
// ordinary checkpoint with per-layer head counts and FFN widths (config.json's distillery_layer_* keys), smaller on disk
// and faster. A layer may keep no heads or no neurons at all: its block then adds only its output bias.
using Distillery.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Pruning;

/// <summary>Which structures of each layer to keep (true = keep), as per-layer boolean masks.</summary>
/// <param name="Heads">Per layer, one entry per current head.</param>
/// <param name="Neurons">Per layer, one entry per current FFN neuron.</param>
public sealed record PruningMask(IReadOnlyList<bool[]> Heads, IReadOnlyList<bool[]> Neurons)
{
    /// <summary>A mask that keeps everything of <paramref name="config"/>.</summary>
    public static PruningMask KeepAll(BertConfig config) => new(
        Enumerable.Range(0, config.NumHiddenLayers).Select(l => Enumerable.Repeat(true, config.HeadsInLayer(l)).ToArray()).ToArray(),
        Enumerable.Range(0, config.NumHiddenLayers).Select(l => Enumerable.Repeat(true, config.IntermediateSizeOf(l)).ToArray()).ToArray());

    /// <summary>Checks the mask against the model's shape.</summary>
    public PruningMask Validate(BertConfig config)
    {
        if (Heads.Count != config.NumHiddenLayers || Neurons.Count != config.NumHiddenLayers)
            throw new ArgumentException($"pruning mask has {Heads.Count}/{Neurons.Count} layers, the model {config.NumHiddenLayers}");
        for (int l = 0; l < config.NumHiddenLayers; l++)
        {
            if (Heads[l].Length != config.HeadsInLayer(l)) throw new ArgumentException($"layer {l}: head mask has {Heads[l].Length} entries for {config.HeadsInLayer(l)} heads");
            if (Neurons[l].Length != config.IntermediateSizeOf(l)) throw new ArgumentException($"layer {l}: neuron mask has {Neurons[l].Length} entries for {config.IntermediateSizeOf(l)} neurons");
        }
        return this;
    }

    /// <summary>Head masks as <see cref="BertForwardOptions.HeadMask"/> tensors (1 keeps, 0 silences).</summary>
    public IReadOnlyList<Tensor?> HeadMaskTensors() => Heads.Select(h => (Tensor?)tensor(h.Select(k => k ? 1f : 0f).ToArray())).ToArray();
}

/// <summary>Physical removal of heads and FFN neurons.</summary>
public static class StructuredPruning
{
    /// <summary>
    /// A new model without the structures <paramref name="mask"/> drops; every kept weight is copied unchanged, so the
    /// result computes exactly what the masked model computes (up to float summation order).
    /// </summary>
    public static BertTaskModel Shrink(BertTaskModel model, PruningMask mask)
    {
        var c = model.Config;
        mask.Validate(c);
        var config = c with
        {
            LayerHeads = mask.Heads.Select(h => h.Count(k => k)).ToArray(),
            LayerIntermediateSizes = mask.Neurons.Select(n => n.Count(k => k)).ToArray(),
            AttentionHeadSize = c.AttentionHeadSize ?? c.HeadSize,
        };
        if (config.LayerHeads.All(h => h == c.NumAttentionHeads)) config = config with { LayerHeads = null };
        if (config.LayerIntermediateSizes.All(f => f == c.IntermediateSize)) config = config with { LayerIntermediateSizes = null };
        if (config.AttentionHeadSize == c.HiddenSize / c.NumAttentionHeads && c.HiddenSize % c.NumAttentionHeads == 0) config = config with { AttentionHeadSize = null };
        var pruned = BertTaskModel.Create(config, model.Task);
        var source = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        int d = c.HeadSize;
        foreach (var (name, target) in pruned.named_parameters())
        {
            Tensor from = source[name];
            Tensor value = from;
            if (name.StartsWith("bert.encoder.layer.", StringComparison.Ordinal))
            {
                int layer = int.Parse(name.Split('.')[3]);
                string rest = string.Join('.', name.Split('.')[4..]);
                // Row/column indices to keep: a head owns rows [h·d, (h+1)·d) of Q/K/V and those columns of attention.output.dense.
                long[] headIndex = mask.Heads[layer].SelectMany((keep, h) => keep ? Enumerable.Range(h * d, d).Select(i => (long)i) : []).ToArray();
                long[] neuronIndex = mask.Neurons[layer].Select((keep, i) => (keep, (long)i)).Where(x => x.keep).Select(x => x.Item2).ToArray();
                value = rest switch
                {
                    "attention.self.query.weight" or "attention.self.key.weight" or "attention.self.value.weight"
                        or "attention.self.query.bias" or "attention.self.key.bias" or "attention.self.value.bias" => from.index_select(0, tensor(headIndex)),
                    "attention.output.dense.weight" => from.index_select(1, tensor(headIndex)),
                    "intermediate.dense.weight" or "intermediate.dense.bias" => from.index_select(0, tensor(neuronIndex)),
                    "output.dense.weight" => from.index_select(1, tensor(neuronIndex)),
                    _ => from,
                };
            }
            if (!value.shape.SequenceEqual(target.shape))
                throw new InvalidOperationException($"{name}: pruned shape [{string.Join(", ", value.shape)}] does not fit [{string.Join(", ", target.shape)}]");
            target.copy_(value);
        }
        return pruned;
    }

    /// <summary>
    /// Zeroes, in place, the weights of the structures <paramref name="mask"/> drops (the "masked model"): a dropped
    /// neuron's intermediate row and bias (GELU(0) = 0) and its output column; a dropped head's Q/K/V rows and biases and
    /// its output-projection columns. Used to keep pruned weights from growing back during training, and in tests.
    /// </summary>
    public static void ZeroMasked(BertTaskModel model, PruningMask mask)
    {
        var c = model.Config;
        mask.Validate(c);
        int d = c.HeadSize;
        using var _ = no_grad();
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            var layer = model.Bert.Encoder.Layers[l];
            for (int h = 0; h < mask.Heads[l].Length; h++)
            {
                if (mask.Heads[l][h]) continue;
                var rows = TensorIndex.Slice(h * d, (h + 1) * d);
                foreach (var dense in new[] { layer.Attention.Self.Query, layer.Attention.Self.Key, layer.Attention.Self.Value })
                {
                    dense.Weight[rows].zero_();
                    dense.Bias?[rows].zero_();
                }
                layer.Attention.Output.Dense.Weight[TensorIndex.Colon, rows].zero_();
            }
            for (int n = 0; n < mask.Neurons[l].Length; n++)
            {
                if (mask.Neurons[l][n]) continue;
                layer.Intermediate.Dense.Weight[n].zero_();
                layer.Intermediate.Dense.Bias?[n].zero_();
                layer.Output.Dense.Weight[TensorIndex.Colon, n].zero_();
            }
        }
    }
}
