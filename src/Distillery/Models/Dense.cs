using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Distillery.Models;

/// <summary>The arithmetic a <see cref="Dense"/> layer's matrix product runs in.</summary>
public enum ComputePrecision
{
    /// <summary>fp32 throughout.</summary>
    [System.Text.Json.Serialization.JsonStringEnumMemberName("fp32")]
    Float32,
    /// <summary>
    /// Mixed precision: the matmul inputs are cast to bf16 (the weights stay fp32 masters, so optimizers update fp32),
    /// the product is cast back to fp32, and the bias is added in fp32. TorchSharp has no autocast; this is its manual
    /// equivalent for the layers that dominate BERT's cost.
    /// </summary>
    [System.Text.Json.Serialization.JsonStringEnumMemberName("bf16")]
    BFloat16,
}

/// <summary>A module whose matrix products can run in another precision (set model-wide by <see cref="BertTaskModel.SetPrecision(ComputePrecision)"/>).</summary>
public interface IPrecisionSwitchable
{
    /// <summary>Arithmetic of the module's matrix products.</summary>
    ComputePrecision Precision { get; set; }
}

/// <summary>
/// A fully connected layer, y = x Wᵀ + b, with the state-dict names of <c>torch.nn.Linear</c> (<c>weight</c> [out, in],
/// <c>bias</c> [out]). Distillery uses it instead of <see cref="Linear"/> because every matmul of the model must be able
/// to switch precision (bf16 training and inference) and to fake-quantize its weight and input (quantization-aware
/// training, see <see cref="FakeQuantize"/>). Either dimension may be 0 (a layer pruned to no heads or no FFN neurons): the output is then the bias alone.
/// </summary>
public sealed class Dense : nn.Module<Tensor, Tensor>, IPrecisionSwitchable
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
    /// <summary>
    /// Quantization-aware training: when on, the forward pass multiplies int8 fake-quantized copies of the weight
    /// (symmetric, per output channel) and of the input (asymmetric uint8, per tensor, range of the current input),
    /// with a straight-through gradient to the fp32 weight and input; the bias stays fp32. This simulates the
    /// exporter's dynamic int8 graph (see <see cref="Quantization.FakeQuant"/>). Default off: the layer is then exactly
    /// <see cref="Linear(Tensor, Tensor, Tensor?, ComputePrecision)"/>.
    /// </summary>
    public bool FakeQuantize { get; set; }

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
        if (!FakeQuantize) return Linear(input, weight, bias, Precision);
        using var scope = NewDisposeScope();
        var x = Quantization.FakeQuant.ActivationPerTensor(input);   // [.., in] on the uint8 grid of this input
        var w = Quantization.FakeQuant.WeightPerChannel(weight);     // [out, in] on the int8 grid of each row
        return Linear(x, w, bias, Precision).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// y = x Wᵀ + b in <paramref name="precision"/>: for bf16, the product of bf16 copies of x [.., in] and W [out, in]
    /// (the kernel accumulates in fp32), widened back to fp32, plus the fp32 bias. Gradients flow to the fp32 W and b.
    /// </summary>
    public static Tensor Linear(Tensor input, Tensor weight, Tensor? bias, ComputePrecision precision)
    {
        if (precision == ComputePrecision.Float32 || input.dtype != ScalarType.Float32)
            return nn.functional.linear(input, weight, bias);
        using var scope = NewDisposeScope();
        var product = nn.functional.linear(input.to(ScalarType.BFloat16), weight.to(ScalarType.BFloat16)).to(ScalarType.Float32);
        var result = bias is null ? product : product.add_(bias);
        return result.MoveToOuterDisposeScope();
    }
}
