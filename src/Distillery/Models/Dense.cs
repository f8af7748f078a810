using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Distillery.Models;

/// <summary>The arithmetic a <see cref="Dense"/> layer's matrix product runs in.</summary>
public enum ComputePrecision
{
    /// <summary>fp32 throughout.</summary>
    Float32,
    /// <summary>
    /// Mixed precision: the matmul inputs are cast to bf16 (the weights stay fp32 masters, so optimizers update fp32),
    /// the product is cast back to fp32, and the bias is added in fp32. TorchSharp has no autocast; this is its manual
    /// equivalent for the layers that dominate BERT's cost.
    /// </summary>
    BFloat16,
}

/// <summary>
/// A fully connected layer, y = x Wᵀ + b, with the state-dict names of <c>torch.nn.Linear</c> (<c>weight</c> [out, in],
/// <c>bias</c> [out]). Distillery uses it instead of <see cref="Linear"/> because every matmul of the model must be able
/// to switch precision (bf16 training and inference) and, later, take a weight transform (fake quantization).
/// Either dimension may be 0 (a layer pruned to no heads or no FFN neurons): the output is then the bias alone.
/// </summary>
public sealed class Dense : nn.Module<Tensor, Tensor>
{
    private Parameter weight;
    private Parameter? bias;

    /// <summary>Input features.</summary>
    public long InFeatures => weight.shape[1];
    /// <summary>Output features.</summary>
    public long OutFeatures => weight.shape[0];
    /// <summary>Weight [out, in].</summary>
    public Parameter Weight => weight;
    /// <summary>Bias [out], or null.</summary>
    public Parameter? Bias => bias;
    /// <summary>Arithmetic of the matrix product; see <see cref="ComputePrecision"/>.</summary>
    public ComputePrecision Precision { get; set; } = ComputePrecision.Float32;

    /// <summary>A layer with uninitialised (empty) parameters; models initialise them explicitly.</summary>
    public Dense(long inFeatures, long outFeatures, bool hasBias = true) : base(nameof(Dense))
    {
        weight = new Parameter(empty(outFeatures, inFeatures));
        bias = hasBias ? new Parameter(zeros(outFeatures)) : null;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        if (Precision == ComputePrecision.Float32 || input.dtype != ScalarType.Float32)
            return nn.functional.linear(input, weight, bias);
        using var scope = NewDisposeScope();
        // [.., in] x [out, in]ᵀ in bf16, accumulated by the kernel in fp32, result widened back to fp32.
        var product = nn.functional.linear(input.to(ScalarType.BFloat16), weight.to(ScalarType.BFloat16)).to(ScalarType.Float32);
        var result = bias is null ? product : product.add_(bias);
        return result.MoveToOuterDisposeScope();
    }
}
