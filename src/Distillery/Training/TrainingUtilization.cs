// Model FLOPs utilization (MFU) of a training run, written into its metrics.json.
using Distillery.Runtime;

namespace Distillery.Training;

/// <summary>
/// Model FLOPs utilization of a training run, for its metrics.json: training FLOPs per token
/// (<see cref="Models.ForwardCost.TrainingFlopsPerToken"/>, 3× forward) × tokens/s, over libtorch's fp32 GEMM peak
/// measured at the start of the run (<see cref="GemmPeaks.TorchOncePerProcess"/>). The tokens are those the objective
/// reports (real tokens of padded task batches, every token of packed MLM sequences), so FLOPs spent on padding, on a
/// distillation teacher's forward, or on anything but the trained model do not count: that is what MFU measures.
/// </summary>
public static class TrainingUtilization
{
    /// <summary>
    /// The "utilization" object of metrics.json: flops_per_token, model_gflops_per_second, the peak (GFLOP/s and its
    /// shapes), the sequence length the attention FLOPs were counted at, and mfu. <paramref name="frozenEncoder"/>: only
    /// the head trains (its encoder counts a forward only).
    /// </summary>
    public static System.Text.Json.Nodes.JsonObject Metrics(Models.BertConfig config, Models.BertTask task, double seqLength, double predictedShare,
        double tokensPerSecond, GemmPeak peak, bool frozenEncoder = false)
    {
        double flopsPerToken = Models.ForwardCost.TrainingFlopsPerToken(config, task, seqLength, predictedShare, frozenEncoder);
        double gflops = flopsPerToken * tokensPerSecond / 1e9;
        return new System.Text.Json.Nodes.JsonObject
        {
            ["flops_per_token"] = Math.Round(flopsPerToken),
            ["counted_at_length"] = Math.Round(seqLength, 1),
            ["model_gflops_per_second"] = Math.Round(gflops, 2),
            ["gemm_peak_gflops"] = Math.Round(peak.PeakGFlops, 2),
            ["gemm_peak"] = peak.ToString(),
            ["mfu"] = Math.Round(gflops / peak.PeakGFlops, 6),
        };
    }
}
