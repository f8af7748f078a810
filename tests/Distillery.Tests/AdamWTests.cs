using TorchSharp;
using TorchAdamW = TorchSharp.Modules.AdamW;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>
/// Distillery's AdamW is TorchSharp's AdamW with a fused update: the same parameters, moments and step counts after
/// several steps (to float rounding), on parameters big enough to be split across threads and small ones, in two
/// groups with different learning rates and weight decay; a learning-rate change between steps (what the scheduler
/// does) is honoured; and its optimizer state file loads into TorchSharp's AdamW and back.
/// </summary>
public sealed class AdamWTests
{
    static readonly long[][] Shapes = [[300, 257], [384], [3, 5]];          // 77,100 elements: two parallel chunks

    static (List<TorchSharp.Modules.Parameter> Params, TorchSharp.Modules.AdamW.ParamGroup[] Groups) Setup(int seed, ScalarType dtype = ScalarType.Float32)
    {
        var generator = new Generator((ulong)seed);
        var parameters = Shapes.Select(s => new TorchSharp.Modules.Parameter(randn(s, generator: generator).to(dtype))).ToList();
        return (parameters, [
            new TorchSharp.Modules.AdamW.ParamGroup(parameters.Take(2), lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-6, weight_decay: 0.01),
            new TorchSharp.Modules.AdamW.ParamGroup(parameters.Skip(2), lr: 3e-3, beta1: 0.8, beta2: 0.99, eps: 1e-8, weight_decay: 0.0),
        ]);
    }

    static void SetGradients(List<TorchSharp.Modules.Parameter> parameters, int step)
    {
        var generator = new Generator((ulong)(1000 + step));
        foreach (var p in parameters) p.grad = randn(p.shape, generator: generator).to(p.dtype) * (step % 2 == 0 ? 1.0 : 1e-3);
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        double scale = Math.Max(1e-3, expected.abs().max().item<float>());
        double diff = (expected - actual).abs().max().ToDouble();
        Assert.True(diff <= 2e-6 * scale, $"{what}: max |diff| {diff:G3} (scale {scale:G3})");
    }

    [Fact]
    public void FusedStepsEqualTorchSharpsAdamW()
    {
        using var scope = NewDisposeScope();
        var (reference, referenceGroups) = Setup(1);
        var (fused, fusedGroups) = Setup(1);
        using var torchSharp = new TorchSharp.Modules.AdamW(referenceGroups);
        using var distillery = new Distillery.Training.AdamW(fusedGroups);
        for (int step = 0; step < 6; step++)
        {
            if (step == 3)                                                       // as the LR scheduler does
                foreach (var optimizer in new optim.Optimizer[] { torchSharp, distillery })
                    foreach (var group in optimizer.ParamGroups) group.LearningRate *= 0.5;
            SetGradients(reference, step);
            SetGradients(fused, step);
            torchSharp.step();
            distillery.step();
        }
        var a = torchSharp.state_dict().State.Cast<TorchSharp.Modules.AdamW.State>().ToList();
        var b = distillery.state_dict().State.Cast<TorchSharp.Modules.AdamW.State>().ToList();
        for (int i = 0; i < reference.Count; i++)
        {
            AssertClose(reference[i], fused[i], $"parameter {i}");
            AssertClose(a[i].exp_avg, b[i].exp_avg, $"exp_avg {i}");
            AssertClose(a[i].exp_avg_sq, b[i].exp_avg_sq, $"exp_avg_sq {i}");
            Assert.Equal(a[i].step, b[i].step);
        }
        Assert.True((reference[0] - Setup(1).Params[0]).abs().max().item<float>() > 1e-3, "the parameters did not move");
    }

    [Fact]
    public void NonFloat32ParametersTakeTorchSharpsOpsExactly()
    {
        using var scope = NewDisposeScope();
        var (reference, referenceGroups) = Setup(2, ScalarType.Float64);
        var (fused, fusedGroups) = Setup(2, ScalarType.Float64);
        using var torchSharp = new TorchSharp.Modules.AdamW(referenceGroups);
        using var distillery = new Distillery.Training.AdamW(fusedGroups);
        for (int step = 0; step < 3; step++)
        {
            SetGradients(reference, step);
            SetGradients(fused, step);
            torchSharp.step();
            distillery.step();
        }
        for (int i = 0; i < reference.Count; i++) Assert.True(Same(reference[i], fused[i]), $"parameter {i}");
    }

    [Fact]
    public void StateFileIsTorchSharpsBothWays()
    {
        using var scope = NewDisposeScope();
        var (first, firstGroups) = Setup(3);
        using var distillery = new Distillery.Training.AdamW(firstGroups);
        for (int step = 0; step < 2; step++) { SetGradients(first, step); distillery.step(); }
        var saved = new MemoryStream();
        using (var writer = new BinaryWriter(saved, System.Text.Encoding.UTF8, leaveOpen: true)) distillery.save_state_dict(writer);

        var (second, secondGroups) = Setup(3);
        using var torchSharp = new TorchSharp.Modules.AdamW(secondGroups);
        saved.Position = 0;
        using (var reader = new BinaryReader(saved, System.Text.Encoding.UTF8, leaveOpen: true)) torchSharp.load_state_dict(reader);
        var a = distillery.state_dict().State.Cast<TorchSharp.Modules.AdamW.State>().ToList();
        var b = torchSharp.state_dict().State.Cast<TorchSharp.Modules.AdamW.State>().ToList();
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(2, b[i].step);
            Assert.True(Same(a[i].exp_avg, b[i].exp_avg) && Same(a[i].exp_avg_sq, b[i].exp_avg_sq), $"state {i}");
        }

        var back = new MemoryStream();
        using (var writer = new BinaryWriter(back, System.Text.Encoding.UTF8, leaveOpen: true)) torchSharp.save_state_dict(writer);
        var (third, thirdGroups) = Setup(3);
        using var again = new Distillery.Training.AdamW(thirdGroups);
        back.Position = 0;
        using (var reader = new BinaryReader(back, System.Text.Encoding.UTF8, leaveOpen: true)) again.load_state_dict(reader);
        Assert.True(again.state_dict().State.Cast<TorchSharp.Modules.AdamW.State>().Zip(b).All(s => s.First.step == 2 && Same(s.First.exp_avg, s.Second.exp_avg)));
    }
}
