// `mask-fill`: FastDropout's keep-mask fill, the scalar SplitMix64 loop against the vector loops (AVX-512, or AVX2 when
// run with DOTNET_EnableAVX512=0), one thread, on an attention-probability-sized mask ([32, 12, 128, 128] by default)
// in a buffer written once before timing (no page faults in the timed loops); then FastDropout.Mask as training calls
// it (a fresh tensor each time, on torch's threads). Medians over the repetitions.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Distillery.Runtime;
using Distillery.Models;
using static TorchSharp.torch;

static class MaskFill
{
    public static unsafe int Run(Func<string, string, string> arg)
    {
        long elements = long.Parse(arg("--elements", (32L * 12 * 128 * 128).ToString()));
        int repeats = int.Parse(arg("--repeats", "15"));
        Console.WriteLine($"# mask fill: {elements:N0} elements (p = 0.1), {repeats} repetitions, medians");
        Console.WriteLine($"# commit {Machine.GitCommit() ?? "unknown"}, {Machine.Describe()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        Console.WriteLine($"# .NET vectors: Vector512 {(Vector512.IsHardwareAccelerated ? "accelerated" : "not accelerated")}, Vector256 {(Vector256.IsHardwareAccelerated ? "accelerated" : "not accelerated")}");
        Console.WriteLine();
        float* buffer = (float*)NativeMemory.AlignedAlloc((nuint)(elements * sizeof(float)), 64);
        try
        {
            new Span<float>(buffer, (int)Math.Min(elements, int.MaxValue)).Clear();
            double Time(Action body)
            {
                body();                                                        // warm-up (and JIT to the optimised tier)
                var times = new List<double>();
                for (int r = 0; r < repeats; r++) { var watch = Stopwatch.StartNew(); body(); times.Add(watch.Elapsed.TotalMilliseconds); }
                times.Sort();
                return times[times.Count / 2];
            }
            for (int i = 0; i < 40; i++) FastDropout.Fill((nint)buffer, 0, 1 << 12, 1, 429496730, 1.1f);   // past tiered JIT
            double scalar = Time(() => FastDropout.Fill((nint)buffer, 0, elements, 12345, 429496730, 1.1f, vectorise: false));
            double vector = Time(() => FastDropout.Fill((nint)buffer, 0, elements, 12345, 429496730, 1.1f));
            double mask = Time(() => FastDropout.Mask([elements], 0.1).Dispose());
            Console.WriteLine("| fill | ms | ns per element |");
            Console.WriteLine("|---|---:|---:|");
            Console.WriteLine($"| scalar loop, 1 thread | {scalar:0.00} | {scalar * 1e6 / elements:0.00} |");
            Console.WriteLine($"| vector loop, 1 thread | {vector:0.00} | {vector * 1e6 / elements:0.00} |");
            Console.WriteLine($"| FastDropout.Mask, new tensor, {get_num_threads()} torch threads | {mask:0.00} | {mask * 1e6 / elements:0.00} |");
        }
        finally { NativeMemory.AlignedFree(buffer); }
        return 0;
    }
}
