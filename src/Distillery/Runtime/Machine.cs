using System.Diagnostics;

namespace Distillery.Runtime;

/// <summary>A one-line description of the machine timings were taken on.</summary>
public static class Machine
{
    /// <summary>
    /// CPU model, core count, the CPU features that decide int8 exactness and bf16 speed, torch threads (and ONNX
    /// Runtime's when given), OS and runtime: <see cref="CpuFeatures.DescribeMachine"/>.
    /// </summary>
    public static string Describe(int? onnxRuntimeThreads = null) => CpuFeatures.DescribeMachine(onnxRuntimeThreads);

    /// <summary>
    /// The commit of the working directory's git checkout (<c>git rev-parse --short HEAD</c>, with "+dirty" when it has
    /// uncommitted changes), or null when there is no git or no checkout: results say which code produced them.
    /// </summary>
    public static string? GitCommit()
    {
        string? Git(string arguments)
        {
            try
            {
                using var process = Process.Start(new ProcessStartInfo("git", arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false });
                if (process is null) return null;
                string output = process.StandardOutput.ReadToEnd();
                if (!process.WaitForExit(5000) || process.ExitCode != 0) return null;
                return output.Trim();
            }
            catch (System.ComponentModel.Win32Exception) { return null; }   // no git
        }
        string? commit = Git("rev-parse --short HEAD");
        if (string.IsNullOrEmpty(commit)) return null;
        return string.IsNullOrEmpty(Git("status --porcelain --untracked-files=no")) ? commit : commit + "+dirty";
    }
}
