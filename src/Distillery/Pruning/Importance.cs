// Importance scores for structured pruning, aggregated per attention head (its Q/K/V rows and output-projection
// columns), per FFN neuron (its intermediate row and output column) and per hidden dimension (its entries of every
// weight that reads or writes the residual stream: HiddenDims.Axes lists them):
//   magnitude:   Σ |θ| over the structure's weights;
//   sensitivity: Σ |θ · ∂L/∂θ| (first-order Taylor estimate of the loss change when θ is zeroed; Molchanov et al. 2019,
//                the choice of methods that prune while distilling), accumulated over steps;
//   PLATON:      Zhang et al. 2022, eq. 4–6: Ī ← β₁Ī + (1−β₁)I, Ū ← β₂Ū + (1−β₂)|I − Ī|, score = Ī · Ū, with I the
//                sensitivity of the step (β₁ 0.85, β₂ 0.95), computed per weight and then aggregated.
using Distillery.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Pruning;

/// <summary>How structures are scored.</summary>
public enum ImportanceScore
{
    /// <summary>Σ |θ|.</summary>
    Magnitude,
    /// <summary>Σ |θ · ∂L/∂θ| accumulated over steps.</summary>
    Sensitivity,
    /// <summary>PLATON: EMA of the sensitivity times an EMA of its uncertainty.</summary>
    Platon,
}

/// <summary>Scores per layer (one per head and one per FFN neuron) and one per hidden dimension.</summary>
public sealed record StructureScores(IReadOnlyList<double[]> Heads, IReadOnlyList<double[]> Neurons, double[] Hidden);

/// <summary>
/// Tracks the importance of every head and neuron of a model. Call <see cref="Accumulate"/> after each backward (before
/// the optimizer step) for the gradient-based scores; magnitude needs no accumulation.
/// </summary>
public sealed class ImportanceTracker : IDisposable
{
    private readonly BertTaskModel model;
    private readonly ImportanceScore kind;
    private readonly double beta1, beta2;
    private readonly Dictionary<string, Tensor> score = [];       // per-weight accumulated sensitivity, or PLATON's Ī
    private readonly Dictionary<string, Tensor> uncertainty = [];  // PLATON's Ū
    private int steps;

    /// <summary>Tracks <paramref name="model"/>'s encoder weights with <paramref name="kind"/>.</summary>
    public ImportanceTracker(BertTaskModel model, ImportanceScore kind, double beta1 = 0.85, double beta2 = 0.95)
    {
        this.model = model;
        this.kind = kind;
        this.beta1 = beta1;
        this.beta2 = beta2;
    }

    /// <summary>Steps accumulated so far.</summary>
    public int Steps => steps;

    static bool Tracked(string name) => HiddenDims.Axes(name).Length > 0 || (name.StartsWith("bert.encoder.layer.", StringComparison.Ordinal) && name.EndsWith(".weight", StringComparison.Ordinal)
        && (name.Contains(".attention.self.", StringComparison.Ordinal) || name.Contains("attention.output.dense", StringComparison.Ordinal)
            || name.Contains("intermediate.dense", StringComparison.Ordinal) || name.EndsWith(".output.dense.weight", StringComparison.Ordinal)));

    /// <summary>Adds this step's |θ · ∂L/∂θ| (sensitivity) or updates PLATON's averages; a no-op for magnitude.</summary>
    public void Accumulate()
    {
        if (kind == ImportanceScore.Magnitude) return;
        using var _ = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            if (!Tracked(name) || p.grad is not Tensor grad) continue;
            using var scope = NewDisposeScope();
            var current = (p * grad).abs();
            if (kind == ImportanceScore.Sensitivity)
            {
                if (score.TryGetValue(name, out var sum)) sum.add_(current);
                else score[name] = current.clone().DetachFromDisposeScope();
            }
            else if (!score.TryGetValue(name, out var mean))
            {
                score[name] = ((1 - beta1) * current).DetachFromDisposeScope();
                uncertainty[name] = ((1 - beta2) * current).DetachFromDisposeScope();   // |I − Ī| with Ī = (1−β₁)I at the first step, up to scale
            }
            else
            {
                mean.mul_(beta1).add_(current, alpha: 1 - beta1);
                uncertainty[name].mul_(beta2).add_((current - mean).abs(), alpha: 1 - beta2);
            }
        }
        steps++;
    }

    /// <summary>
    /// What has accumulated, for a checkpoint: per tracked weight, <c>score/NAME</c> (the sensitivity's sum, or PLATON's Ī)
    /// and, for PLATON, <c>uncertainty/NAME</c> (Ū), each shaped like the weight; and the steps accumulated. The tensors
    /// are the tracker's own (not copies): write them before the next <see cref="Accumulate"/>.
    /// </summary>
    public (IReadOnlyDictionary<string, Tensor> Tensors, int Steps) State()
    {
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (name, t) in score) tensors["score/" + name] = t;
        foreach (var (name, t) in uncertainty) tensors["uncertainty/" + name] = t;
        return (tensors, steps);
    }

    /// <summary>
    /// Replaces the accumulated state with <paramref name="tensors"/> (copied) as <see cref="State"/> names them, for the
    /// same model and score. A name this tracker does not keep, a shape other than its weight's, or a PLATON mean without
    /// its uncertainty throws <see cref="InvalidDataException"/> naming it.
    /// </summary>
    public void Restore(IReadOnlyDictionary<string, Tensor> tensors, int steps)
    {
        if (steps < 0) throw new InvalidDataException($"importance state: {steps} steps accumulated");
        var weights = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var restored = new List<(Dictionary<string, Tensor> Into, string Name, Tensor Value)>();
        foreach (var (key, value) in tensors)
        {
            int slash = key.IndexOf('/');
            string kindName = slash < 0 ? "" : key[..slash], name = key[(slash + 1)..];
            var into = (kindName, kind) switch
            {
                ("score", ImportanceScore.Sensitivity or ImportanceScore.Platon) => score,
                ("uncertainty", ImportanceScore.Platon) => uncertainty,
                _ => throw new InvalidDataException($"importance state: {key} is not kept by a {kind.ToString().ToLowerInvariant()} tracker"),
            };
            if (!Tracked(name) || !weights.TryGetValue(name, out var weight))
                throw new InvalidDataException($"importance state: {key} names no tracked weight of the model");
            if (!value.shape.SequenceEqual(weight.shape) || value.dtype != ScalarType.Float32)
                throw new InvalidDataException($"importance state: {key} is {value.dtype} [{string.Join(", ", value.shape)}], the weight float32 [{string.Join(", ", weight.shape)}]");
            restored.Add((into, name, value));
        }
        if (kind == ImportanceScore.Platon && !restored.Where(r => r.Into == score).Select(r => r.Name).ToHashSet()
                .SetEquals(restored.Where(r => r.Into == uncertainty).Select(r => r.Name)))
            throw new InvalidDataException("importance state: PLATON's means and uncertainties do not pair up");
        Dispose();
        foreach (var (into, name, value) in restored) into[name] = value.clone().DetachFromDisposeScope();
        this.steps = steps;
    }

    /// <summary>Per-weight importance of parameter <paramref name="name"/> (a fresh tensor).</summary>
    Tensor WeightScore(string name, Tensor weight) => kind switch
    {
        ImportanceScore.Magnitude => weight.detach().abs(),
        ImportanceScore.Sensitivity => score.TryGetValue(name, out var s) ? s.clone() : zeros_like(weight),
        _ => score.TryGetValue(name, out var m) ? m * uncertainty[name] : zeros_like(weight),
    };

    /// <summary>
    /// The scores of every head, neuron and hidden dimension, summing the per-weight scores of the structure's rows and
    /// columns (a hidden dimension's entries along every hidden axis of every parameter; an entry of a [H, H] matrix
    /// counts for both its row's and its column's dimension).
    /// </summary>
    public StructureScores Scores()
    {
        var c = model.Config;
        int d = c.HeadSize;
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var weights = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var heads = new double[c.NumHiddenLayers][];
        var neurons = new double[c.NumHiddenLayers][];
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string prefix = $"bert.encoder.layer.{l}.";
            Tensor S(string suffix) => WeightScore(prefix + suffix, weights[prefix + suffix]);
            int h = c.HeadsInLayer(l), f = c.IntermediateSizeOf(l);
            // Q/K/V weights [h·d, H]: rows of head i are [i·d, (i+1)·d); attention.output.dense [H, h·d]: those columns.
            // (dim: named: TorchSharp's sum(0) would bind to sum(ScalarType) and total everything.)
            var perRow = S("attention.self.query.weight").sum(dim: 1) + S("attention.self.key.weight").sum(dim: 1) + S("attention.self.value.weight").sum(dim: 1)
                       + S("attention.output.dense.weight").sum(dim: 0);                              // [h·d]
            heads[l] = h == 0 ? [] : perRow.view(h, d).sum(dim: 1).to(ScalarType.Float64).data<double>().ToArray();
            // intermediate.dense [F, H]: row n; output.dense [H, F]: column n.
            var perNeuron = S("intermediate.dense.weight").sum(dim: 1) + S("output.dense.weight").sum(dim: 0);  // [F]
            neurons[l] = f == 0 ? [] : perNeuron.to(ScalarType.Float64).data<double>().ToArray();
        }
        var perDim = zeros(c.HiddenSize, dtype: ScalarType.Float64);   // [H]
        foreach (var (name, weight) in weights)
            foreach (int axis in HiddenDims.Axes(name))
            {
                var s = WeightScore(name, weight).to(ScalarType.Float64);
                perDim.add_(s.dim() == 1 ? s : s.sum(dim: 1 - axis));   // [H]: sum over the other axis of a matrix
            }
        return new StructureScores(heads, neurons, perDim.data<double>().ToArray());
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var t in score.Values.Concat(uncertainty.Values)) t.Dispose();
        score.Clear();
        uncertainty.Clear();
    }
}

/// <summary>
/// The cubic sparsity schedule (Zhu &amp; Gupta 2017; used by PLATON and by pruning while distilling): no pruning for the first
/// <c>warmup</c> steps, then the pruned fraction rises as s(t) = s_f · (1 − (1 − (t − t_i)/(T − t_i − t_f))³), reaching
/// the final sparsity s_f <c>final</c> steps before the end and staying there.
/// </summary>
/// <param name="FinalSparsity">Fraction of structures removed at the end, in [0, 1).</param>
/// <param name="TotalSteps">T.</param>
/// <param name="WarmupSteps">t_i.</param>
/// <param name="FinalSteps">t_f.</param>
public sealed record CubicSchedule(double FinalSparsity, int TotalSteps, int WarmupSteps, int FinalSteps)
{
    /// <summary>The pruned fraction at step <paramref name="step"/>.</summary>
    public double Sparsity(int step)
    {
        if (FinalSparsity is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(FinalSparsity), "final sparsity must be in [0, 1)");
        return FinalSparsity * Progress(step);
    }

    /// <summary>The cubic curve alone, 0 before pruning starts and 1 from the final phase on: 1 − (1 − (t − t_i)/(T − t_i − t_f))³.</summary>
    public double Progress(int step)
    {
        int span = TotalSteps - WarmupSteps - FinalSteps;
        if (span <= 0) throw new ArgumentException($"the schedule has no pruning phase: {TotalSteps} steps, {WarmupSteps} warm-up, {FinalSteps} final");
        if (step < WarmupSteps) return 0;
        if (step >= TotalSteps - FinalSteps) return 1;
        return 1 - Math.Pow(1 - (double)(step - WarmupSteps) / span, 3);
    }
}

/// <summary>Turns scores into a keep-mask.</summary>
public static class MaskSelection
{
    /// <summary>
    /// Keeps the highest-scoring <paramref name="keepHeads"/> heads and <paramref name="keepNeurons"/> neurons of every
    /// layer (a per-layer target: the result has exactly these widths), and the highest-scoring
    /// <paramref name="keepHidden"/> hidden dimensions (null keeps them all). Ties go to the lower index.
    /// </summary>
    public static PruningMask PerLayer(StructureScores scores, int keepHeads, int keepNeurons, int? keepHidden = null) => new(
        scores.Heads.Select(h => TopK(h, Math.Min(keepHeads, h.Length))).ToArray(),
        scores.Neurons.Select(n => TopK(n, Math.Min(keepNeurons, n.Length))).ToArray(),
        keepHidden is int k ? TopK(scores.Hidden, Math.Min(k, scores.Hidden.Length)) : null);

    /// <summary>
    /// Scores with the structures <paramref name="mask"/> already dropped pushed below every live one, so that a new
    /// selection never revives them (masks only shrink).
    /// </summary>
    public static StructureScores Excluding(StructureScores scores, PruningMask mask) => new(
        scores.Heads.Select((h, l) => h.Select((v, i) => mask.Heads[l][i] ? v : double.NegativeInfinity).ToArray()).ToArray(),
        scores.Neurons.Select((n, l) => n.Select((v, i) => mask.Neurons[l][i] ? v : double.NegativeInfinity).ToArray()).ToArray(),
        scores.Hidden.Select((v, i) => mask.Hidden == null || mask.Hidden[i] ? v : double.NegativeInfinity).ToArray());

    /// <summary>
    /// Keeps the highest-scoring structures across all layers (a global target), a fraction of each kind; scores are
    /// compared as they are, so a layer may lose all of its heads or neurons.
    /// </summary>
    public static PruningMask Global(StructureScores scores, double keepHeadFraction, double keepNeuronFraction)
    {
        bool[][] Choose(IReadOnlyList<double[]> perLayer, double fraction)
        {
            var all = perLayer.SelectMany((s, l) => s.Select((v, i) => (v, l, i))).OrderByDescending(x => x.v).ThenBy(x => x.l).ThenBy(x => x.i).ToList();
            int keep = (int)Math.Round(fraction * all.Count);
            var mask = perLayer.Select(s => new bool[s.Length]).ToArray();
            foreach (var (_, l, i) in all.Take(keep)) mask[l][i] = true;
            return mask;
        }
        return new PruningMask(Choose(scores.Heads, keepHeadFraction), Choose(scores.Neurons, keepNeuronFraction), Hidden: null);
    }

    static bool[] TopK(double[] values, int k)
    {
        var keep = new bool[values.Length];
        foreach (int i in Enumerable.Range(0, values.Length).OrderByDescending(i => values[i]).ThenBy(i => i).Take(k)) keep[i] = true;
        return keep;
    }
}
