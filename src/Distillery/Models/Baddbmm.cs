// input + α·(batch1 @ batch2) in one call, working around TorchSharp 0.107's binding of baddbmm.
//
// Why: TorchSharp's Tensor.baddbmm(batch1, batch2) passes (this, batch1, batch2) to the native THSTensor_baddbmm,
// whose parameters are (batch1, batch2, mat) and which computes mat.baddbmm(batch1, batch2); so `input.baddbmm(b1, b2)`
// runs b2 + input @ b1. A binding fixed upstream would flip that, so the order is probed once per process on a
// 1 x 1 x 1 problem (no guessing from the version number), and a binding that does neither throws.
using static TorchSharp.torch;

namespace Distillery.Models;

/// <summary><c>torch.baddbmm</c> with the argument order that the loaded TorchSharp binding actually honours.</summary>
public static class Baddbmm
{
    private static readonly Lazy<bool> BindingSwapsArguments = new(Probe);

    /// <summary>
    /// input + α·(batch1 @ batch2) with β = 1: batch1 [N, n, m], batch2 [N, m, p], input broadcastable to [N, n, p].
    /// </summary>
    public static Tensor Apply(Tensor input, Tensor batch1, Tensor batch2, float alpha) =>
        BindingSwapsArguments.Value
            ? batch1.baddbmm(batch2, input, beta: 1, alpha: alpha)   // native: input.baddbmm(batch1, batch2)
            : input.baddbmm(batch1, batch2, beta: 1, alpha: alpha);

    /// <summary>True when the binding computes b2 + this @ b1 (TorchSharp 0.107), false when it honours the docs.</summary>
    private static bool Probe()
    {
        using var scope = NewDisposeScope();
        // input 1, batch1 2, batch2 3, α 1: the documented result is 1 + 2·3 = 7; the swapped binding's 3 + 1·2 = 5.
        var input = full(new long[] { 1, 1, 1 }, 1f);
        var b1 = full(new long[] { 1, 1, 1 }, 2f);
        var b2 = full(new long[] { 1, 1, 1 }, 3f);
        float documented = input.baddbmm(b1, b2, beta: 1, alpha: 1).item<float>();
        if (documented == 7f) return false;
        if (documented == 5f) return true;
        throw new InvalidOperationException($"TorchSharp's baddbmm returned {documented} for 1 + 2·3: neither the documented order nor the known swapped one");
    }
}
