using System.Runtime.InteropServices;
using TorchSharp;

namespace Distillery.Bench;

/// <summary>A one-line description of the machine timings were taken on.</summary>
public static class Machine
{
    /// <summary>CPU model, core count, torch threads, OS and runtime.</summary>
    public static string Describe()
    {
        string cpu = "unknown CPU";
        try
        {
            if (File.Exists("/proc/cpuinfo"))
                cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? cpu;
        }
        catch (IOException) { }
        return $"{cpu}, {Environment.ProcessorCount} cores, {torch.get_num_threads()} torch threads, {RuntimeInformation.OSDescription.Trim()}, .NET {Environment.Version}, TorchSharp";
    }
}
