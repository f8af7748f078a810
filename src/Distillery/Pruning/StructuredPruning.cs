// Structured pruning that really shrinks the model: attention heads (their Q/K/V rows and output-projection columns)
// and FFN neurons (their intermediate row and output column) are removed from the weight matrices, so the result is an
// ordinary checkpoint with per-layer head counts and FFN widths (config.json's distillery_layer_* keys), smaller on disk
// and faster. A layer may keep no heads or no neurons at all: its block then adds only its output bias.
// Hidden dimensions are pruned model-wide: dimension j of the residual stream is column j of every embedding table,
// entry j of every LayerNorm, row j of every projection that writes the stream (attention output, FFN output) and its
// bias, column j of every projection that reads it (Q/K/V, FFN input, pooler, classifier, QA, MLM transform), and
// row j of the pooler and the MLM transform (their outputs are H-wide too). The head size stays as it was, so a model
// whose new H' is not heads × d records d in distillery_attention_head_size. The masked model that the shrunk one
// equals zeroes those weights and normalises every LayerNorm over the kept dimensions only (BertTaskModel.SetHiddenMask).
using System.Text.Json.Nodes;
using Distillery.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Pruning;

/// <summary>Which structures to keep (true = keep): per-layer head and neuron masks, and one model-wide hidden mask.</summary>
/// <param name="Heads">Per layer, one entry per current head.</param>
/// <param name="Neurons">Per layer, one entry per current FFN neuron.</param>
/// <param name="Hidden">One entry per hidden dimension H; null keeps them all.</param>
public sealed record PruningMask(IReadOnlyList<bool[]> Heads, IReadOnlyList<bool[]> Neurons, bool[]? Hidden = null)
{
    /// <summary>A mask that keeps everything of <paramref name="config"/>.</summary>
    public static PruningMask KeepAll(BertConfig config) => new(
        Enumerable.Range(0, config.NumHiddenLayers).Select(l => Enumerable.Repeat(true, config.HeadsInLayer(l)).ToArray()).ToArray(),
        Enumerable.Range(0, config.NumHiddenLayers).Select(l => Enumerable.Repeat(true, config.IntermediateSizeOf(l)).ToArray()).ToArray(),
        Enumerable.Repeat(true, config.HiddenSize).ToArray());

    /// <summary>Hidden dimensions kept.</summary>
    public int KeptHidden(BertConfig config) => Hidden?.Count(k => k) ?? config.HiddenSize;

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
        if (Hidden != null && Hidden.Length != config.HiddenSize) throw new ArgumentException($"hidden mask has {Hidden.Length} entries for hidden size {config.HiddenSize}");
        if (Hidden != null && !Hidden.Any(k => k)) throw new ArgumentException("hidden mask keeps no dimension; a model needs at least one");
        return this;
    }

    /// <summary>The mask as JSON, each mask a string of 1 (kept) and 0: <c>{"heads": ["1101", …], "neurons": […], "hidden": "11…" or null}</c>.</summary>
    public JsonObject ToJson()
    {
        static string Bits(bool[] keep) => new(keep.Select(k => k ? '1' : '0').ToArray());
        return new JsonObject
        {
            ["heads"] = new JsonArray(Heads.Select(h => (JsonNode?)Bits(h)).ToArray()),
            ["neurons"] = new JsonArray(Neurons.Select(n => (JsonNode?)Bits(n)).ToArray()),
            ["hidden"] = Hidden is null ? null : Bits(Hidden),
        };
    }

    /// <summary>A mask written by <see cref="ToJson"/>, checked against <paramref name="config"/>; anything else throws <see cref="InvalidDataException"/> naming <paramref name="where"/>.</summary>
    public static PruningMask FromJson(JsonNode? node, BertConfig config, string where)
    {
        static bool[] Bits(JsonNode? bits, string what, string where)
        {
            string text = bits is JsonValue v && v.TryGetValue(out string? s) ? s : throw new InvalidDataException($"{where}: {what} is not a string of 0 and 1");
            return text.Select(c => c switch { '1' => true, '0' => false, _ => throw new InvalidDataException($"{where}: {what} holds '{c}', not 0 or 1") }).ToArray();
        }
        static bool[][] Layers(JsonNode? list, string what, string where) => list is JsonArray a
            ? a.Select((bits, l) => Bits(bits, $"{what}[{l}]", where)).ToArray()
            : throw new InvalidDataException($"{where}: {what} is not a list of per-layer masks");
        if (node is not JsonObject o) throw new InvalidDataException($"{where}: the pruning mask is not a JSON object");
        var mask = new PruningMask(Layers(o["heads"], "heads", where), Layers(o["neurons"], "neurons", where), o["hidden"] is null ? null : Bits(o["hidden"], "hidden", where));
        try
        {
            return mask.Validate(config);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{where}: {e.Message}");
        }
    }

    /// <summary>Head masks as <see cref="BertForwardOptions.HeadMask"/> tensors (1 keeps, 0 silences).</summary>
    public IReadOnlyList<Tensor?> HeadMaskTensors() => Heads.Select(h => (Tensor?)tensor(h.Select(k => k ? 1f : 0f).ToArray())).ToArray();
}

/// <summary>Which axes of each parameter index the hidden dimension (the residual stream's width H).</summary>
public static class HiddenDims
{
    /// <summary>
    /// The axes of parameter <paramref name="name"/> that run over H: embedding tables [*, H] → 1; LayerNorm [H] → 0;
    /// stream writers (attention/FFN output [H, *] and biases [H]) → 0; stream readers (Q/K/V, FFN input, classifier,
    /// QA [*, H]) → 1; the pooler and MLM transform [H, H] → both; anything else (heads' widths, the MLM bias [V]) → none.
    /// </summary>
    public static int[] Axes(string name)
    {
        if (name.StartsWith("bert.embeddings.", StringComparison.Ordinal))
            return name.Contains(".LayerNorm.", StringComparison.Ordinal) ? [0] : [1];
        if (name.StartsWith("bert.encoder.layer.", StringComparison.Ordinal))
        {
            string rest = string.Join('.', name.Split('.')[4..]);
            return rest switch
            {
                "attention.self.query.weight" or "attention.self.key.weight" or "attention.self.value.weight" or "intermediate.dense.weight" => [1],
                "attention.output.dense.weight" or "attention.output.dense.bias" or "attention.output.LayerNorm.weight" or "attention.output.LayerNorm.bias"
                    or "output.dense.weight" or "output.dense.bias" or "output.LayerNorm.weight" or "output.LayerNorm.bias" => [0],
                _ => [],
            };
        }
        return name switch
        {
            "bert.pooler.dense.weight" or "cls.predictions.transform.dense.weight" => [0, 1],
            "bert.pooler.dense.bias" or "cls.predictions.transform.dense.bias" or "cls.predictions.transform.LayerNorm.weight" or "cls.predictions.transform.LayerNorm.bias" => [0],
            "classifier.weight" or "qa_outputs.weight" => [1],
            _ => [],
        };
    }
}

/// <summary>Physical removal of heads, FFN neurons and hidden dimensions.</summary>
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
        int hidden = mask.KeptHidden(c);
        var config = c with
        {
            HiddenSize = hidden,
            LayerHeads = mask.Heads.Select(h => h.Count(k => k)).ToArray(),
            LayerIntermediateSizes = mask.Neurons.Select(n => n.Count(k => k)).ToArray(),
            AttentionHeadSize = c.HeadSize,   // the head size stays; recorded only where H'/heads no longer gives it
        };
        if (config.LayerHeads.All(h => h == c.NumAttentionHeads)) config = config with { LayerHeads = null };
        if (config.LayerIntermediateSizes.All(f => f == c.IntermediateSize)) config = config with { LayerIntermediateSizes = null };
        if (hidden % c.NumAttentionHeads == 0 && c.HeadSize == hidden / c.NumAttentionHeads) config = config with { AttentionHeadSize = null };
        long[]? hiddenIndex = mask.Hidden == null || mask.Hidden.All(k => k) ? null
            : mask.Hidden.Select((keep, i) => (keep, (long)i)).Where(x => x.keep).Select(x => x.Item2).ToArray();
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
            if (hiddenIndex != null)
                foreach (int axis in HiddenDims.Axes(name)) value = value.index_select(axis, tensor(hiddenIndex));
            if (!value.shape.SequenceEqual(target.shape))
                throw new InvalidOperationException($"{name}: pruned shape [{string.Join(", ", value.shape)}] does not fit [{string.Join(", ", target.shape)}]");
            target.copy_(value);
        }
        return pruned;
    }

    /// <summary>
    /// Makes <paramref name="model"/> the masked model of <paramref name="mask"/>, in place: zeroes a dropped neuron's
    /// intermediate row and bias (GELU(0) = 0) and its output column; a dropped head's Q/K/V rows and biases and its
    /// output-projection columns; a dropped hidden dimension's entries of every parameter along its hidden axes
    /// (<see cref="HiddenDims"/>), and restricts the LayerNorms to the kept dimensions
    /// (<see cref="BertTaskModel.SetHiddenMask"/>). Used after every optimizer step so pruned weights cannot grow back,
    /// and in tests.
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
        model.SetHiddenMask(mask.Hidden);
        if (mask.Hidden == null || mask.Hidden.All(k => k)) return;
        using var scope = NewDisposeScope();
        var dropped = tensor(mask.Hidden.Select((keep, i) => (keep, (long)i)).Where(x => !x.keep).Select(x => x.Item2).ToArray());
        foreach (var (name, p) in model.named_parameters())
            foreach (int axis in HiddenDims.Axes(name)) p.index_fill_(axis, dropped, 0);
    }
}
