using System.Diagnostics;
using Distillery.IO;

namespace Distillery.Tests;

/// <summary>
/// The <c>distillery</c> command as a user runs it: a separate process, its exit code, stdout and stderr.
/// Bad input must give exit code 1 and one line on stderr, and leave nothing behind that looks finished.
/// </summary>
public sealed class CliTests
{
    internal sealed record Result(int ExitCode, string Out, string Err);

    static readonly Lazy<string> CliDll = new(() =>
    {
        // tests/Distillery.Tests/bin/<Configuration>/net10.0/linux-x64/ → src/Distillery.Cli/bin/<Configuration>/...
        var here = new DirectoryInfo(AppContext.BaseDirectory);
        string configuration = here.Parent!.Parent!.Name;
        var root = here;
        while (root != null && !File.Exists(Path.Combine(root.FullName, "Distillery.slnx"))) root = root.Parent;
        Assert.NotNull(root);
        string dll = Path.Combine(root!.FullName, "src", "Distillery.Cli", "bin", configuration, "net10.0", "linux-x64", "Distillery.Cli.dll");
        Assert.True(File.Exists(dll), $"CLI not built at {dll}");
        return dll;
    });

    /// <summary>The repository root (the folder holding Distillery.slnx), found from the test binaries.</summary>
    static string RepositoryRoot()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root != null && !File.Exists(Path.Combine(root.FullName, "Distillery.slnx"))) root = root.Parent;
        Assert.NotNull(root);
        return root!.FullName;
    }

    internal static Result Run(string workDir, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = workDir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(CliDll.Value);
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["COLUMNS"] = "200";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), $"distillery {string.Join(' ', args)} did not finish");
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    internal static void AssertOneLineError(Result r, params string[] fragments)
    {
        Assert.Equal(1, r.ExitCode);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one error line, got:\n{r.Err}");
        Assert.StartsWith("error: ", lines[0]);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }

    [Fact]
    public void HelpListsEveryCommandAndEachHasHelp()
    {
        using var tmp = new TestData.TempDir();
        var help = Run(tmp.Dir, "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("distillery [command]", help.Out);
        string[] commands = ["quickstart", "import", "init", "pretrain", "finetune", "eval", "distill", "run", "prune", "quantize", "export", "bench", "inspect", "plot", "convert", "reduce", "extract", "fill-mask", "predict"];
        foreach (var command in commands)
        {
            Assert.Contains(command, help.Out);
            var r = Run(tmp.Dir, command, "--help");
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("Usage:", r.Out);
        }
    }

    [Fact]
    public void PlotDrawsAFigureFromJsonAndRefusesABadOneWithOneLine()
    {
        using var tmp = new TestData.TempDir();
        File.WriteAllText(Path.Combine(tmp.Dir, "f.json"), """
            { "title": "t", "x_label": "step", "y_label": "KL", "legend": "lower_left",
              "series": [ { "label": "a", "lines": true, "points": [ { "x": 0, "y": 1, "y_error": 0.5 }, { "x": 1, "y": 2 } ] },
                          { "label": "b", "points": [ { "x": 0.5, "y": 1.5, "label": "b s1" } ] } ] }
            """);
        var r = Run(tmp.Dir, "plot", "f.json", "--out", "f.png");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("2 series, 3 points", r.Out);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(Path.Combine(tmp.Dir, "f.png"))[..4]);
        File.WriteAllText(Path.Combine(tmp.Dir, "typo.json"), """{ "title": "t", "x_lable": "x", "y_label": "y", "series": [] }""");
        AssertOneLineError(Run(tmp.Dir, "plot", "typo.json", "-o", "g.png"), "unknown key x_lable", "did you mean x_label");
        File.WriteAllText(Path.Combine(tmp.Dir, "empty.json"), """{ "title": "t", "x_label": "x", "y_label": "y", "series": [ { "label": "a", "points": [] } ] }""");
        AssertOneLineError(Run(tmp.Dir, "plot", "empty.json", "-o", "g.png"), "series \"a\" has no points");
        AssertOneLineError(Run(tmp.Dir, "plot", "f.json", "-o", "f.json"), "f.json");
        Assert.False(File.Exists(Path.Combine(tmp.Dir, "g.png")));
    }

    [Fact]
    public void InitInspectAndFillMaskOnBertTiny()
    {
        using var tmp = new TestData.TempDir();
        var init = Run(tmp.Dir, "init", "--arch", "L2-H128", "--out", "m");
        Assert.True(init.ExitCode == 0, init.Err);
        var inspect = Run(tmp.Dir, "inspect", "m");
        Assert.True(inspect.ExitCode == 0, inspect.Err);
        Assert.Contains("4,416,698 (4.4M)", inspect.Out);   // bert-tiny's 4.4M: 30522-token vocab, MLM head
        Assert.Contains("L2-H128", inspect.Out);
        Assert.Contains("vocab 30522", inspect.Out);
        var fill = Run(tmp.Dir, "fill-mask", "m", "the capital of france is [MASK].", "--top-k", "3");
        Assert.True(fill.ExitCode == 0, fill.Err);
        Assert.Contains("[MASK] at token 6", fill.Out);
    }

    [Fact]
    public void QuickstartRunsEndToEndAndPrintsTheBenchTable()
    {
        // A tiny pre-trained-layout teacher keeps this test in seconds; the committed L4-H256 teacher's run (minutes)
        // is the one docs/results.md records.
        using var tmp = new TestData.TempDir();
        var vocab = TestData.Path("tokenizers", "bert-base-uncased", "vocab.txt");
        Assert.Equal(0, Run(tmp.Dir, "init", "--layers", "2", "--hidden", "32", "--heads", "2", "--vocab", vocab, "--out", "tiny-teacher").ExitCode);
        var r = Run(tmp.Dir, "quickstart", "--out", "qs", "--teacher", "tiny-teacher", "--train-examples", "64", "--steps", "2", "--iterations", "2");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        Assert.Contains("real data: SST-2", r.Out);
        Assert.Contains("SST-2 dev accuracy", r.Out);
        string table = r.Out.Replace('│', '|');
        // Every backend worth running here; torch-bf16 only where the CPU has native bf16 (emulated, it is slower than fp32).
        foreach (var backend in Bench.BenchBackends.Recommended) Assert.Contains("| " + Bench.BenchBackends.Name(backend) + " ", table);
        Assert.Equal(Runtime.CpuFeatures.Current.HasNativeBf16, table.Contains("| torch-bf16"));
        Assert.Contains("onnx-int8", table);
        Assert.Contains("vanilla KD + int8", r.Out);
        Assert.True(File.Exists(Path.Combine(tmp.Dir, "qs", "teacher-sst2", "config.json")));
    }

    [Fact]
    public void BenchMeasuresSeveralModelsInOneRunAndWritesMarkdown()
    {
        using var tmp = new TestData.TempDir();
        var vocab = TestData.Path("tokenizers", "bert-base-uncased", "vocab.txt");
        Assert.Equal(0, Run(tmp.Dir, "init", "--layers", "2", "--hidden", "64", "--heads", "2", "--task", "SequenceClassification", "--vocab", vocab, "--out", "big").ExitCode);
        Assert.Equal(0, Run(tmp.Dir, "init", "--layers", "1", "--hidden", "32", "--heads", "2", "--task", "SequenceClassification", "--vocab", vocab, "--out", "small").ExitCode);
        var r = Run(tmp.Dir, "bench", "big", "small", "--task", "sst2", "--data", TestData.Path("glue"), "--iterations", "3", "--out", "table.md");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        string table = File.ReadAllText(Path.Combine(tmp.Dir, "table.md"));
        Assert.Contains("| big | L2-H64-A2 |", table);
        Assert.Contains("| small | L1-H32-A2 |", table);
        Assert.Contains("| 100.0% |", table);   // the first row is the reference
        Assert.Contains("speed-up b1", table);
        Assert.Contains($"features {Runtime.CpuFeatures.Current.Describe()}", table);   // the header says what the CPU can do
        Assert.Contains("torch threads", table);

        // Across backends, with the plot; an unknown backend is one line.
        var across = Run(tmp.Dir, "bench", "small", "--task", "sst2", "--data", TestData.Path("glue"), "--iterations", "2", "--seq-length", "16",
            "--backends", "torch-fp32,onnx-int8", "--out", "across.md", "--plot", "across.png", "--json", "across.json");
        Assert.True(across.ExitCode == 0, across.Err + across.Out);
        var record = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(tmp.Dir, "across.json")))!;
        Assert.Equal(["torch-fp32", "onnx-int8"], record["rows"]!.AsArray().Select(r => (string)r!["backend"]!));
        Assert.Equal(["libtorch", "onnxruntime"], record["gemm_peaks"]!.AsArray().Select(p => (string)p!["backend"]!));
        Assert.All(record["rows"]!.AsArray(), r => Assert.True((double)r!["batch1"]!["peak_fraction"]! > 0));
        string acrossTable = File.ReadAllText(Path.Combine(tmp.Dir, "across.md"));
        Assert.Contains("onnx-int8: 7bit weights", acrossTable);
        Assert.Contains("ONNX Runtime threads", acrossTable);
        Assert.Contains("| small | L1-H32-A2 | torch-fp32 |", acrossTable);
        Assert.Contains("| small | L1-H32-A2 | onnx-int8 |", acrossTable);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(Path.Combine(tmp.Dir, "across.png"))[..4]);
        AssertOneLineError(Run(tmp.Dir, "bench", "small", "--task", "sst2", "--data", TestData.Path("glue"), "--backends", "onnx-fp16"), "unknown backend \"onnx-fp16\"");
    }

    [Fact]
    public void HomoDistilAndPruneRefuseUnreachableTargetsWithOneLine()
    {
        using var tmp = new TestData.TempDir();
        var vocab = TestData.Path("tokenizers", "bert-base-uncased", "vocab.txt");
        Assert.Equal(0, Run(tmp.Dir, "init", "--layers", "2", "--hidden", "32", "--heads", "2", "--task", "SequenceClassification", "--vocab", vocab, "--out", "t").ExitCode);
        string[] common = ["--teacher", "t", "--task", "sst2", "--data", TestData.Path("glue"), "--out", "s"];
        AssertOneLineError(Run(tmp.Dir, ["distill", "--method", "homodistil", "--target", "L4-H16", .. common]), "4 layers, more than the teacher's 2");
        AssertOneLineError(Run(tmp.Dir, ["distill", "--method", "homodistil", "--target", "L2-H64-A2", .. common]), "wider than the teacher");
        AssertOneLineError(Run(tmp.Dir, ["distill", "--method", "homodistil", .. common]), "needs a target");
        Assert.Equal(1, Run(tmp.Dir, ["distill", "--method", "homodistil", "--target", "L2-H16", "--score", "entropy", .. common]).ExitCode);
        AssertOneLineError(Run(tmp.Dir, "prune", "-m", "t", "--task", "sst2", "--data", TestData.Path("glue"), "--target", "L2-H16", "--keep-heads", "1", "-o", "p"), "not both");
        Assert.False(Directory.Exists(Path.Combine(tmp.Dir, "s")) || Directory.Exists(Path.Combine(tmp.Dir, "p")), "a refused run left an output folder");

        // A bool option of a method is a switch: --one-shot alone is true; a value still reads; anything else is one line.
        AssertOneLineError(Run(tmp.Dir, ["distill", "--method", "homodistil", "--target", "L2-H16", "--one-shot", "maybe", .. common]), "--one-shot: \"maybe\" is not true or false");
        AssertOneLineError(Run(tmp.Dir, ["distill", "--method", "theseus", "--one-shot", .. common]), "--one-shot is not an option of theseus");
        string[] tiny = ["--teacher", "t", "--task", "sst2", "--data", TestData.Path("glue"), "--max-train-examples", "16", "--max-steps", "2", "--batch-size", "8", "--precision", "fp32"];
        foreach (var (flags, expected) in new[] { (new[] { "--one-shot" }, true), (new[] { "--one-shot", "false" }, false) })
        {
            string output = $"oneshot-{expected}";
            Assert.Equal(0, Run(tmp.Dir, ["distill", "--method", "homodistil", "--target", "L2-H16", .. flags, .. tiny, "--out", output]).ExitCode);
            var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(tmp.Dir, output, "run_config.json")))!;
            Assert.Equal(expected, config["options"]!["homodistil"]!["one_shot"]!.GetValue<bool>());
        }
    }

    [Fact]
    public void InspectShowsAPrunedModelsPerLayerWidths()
    {
        using var tmp = new TestData.TempDir();
        var config = Models.BertConfig.Create(2, 32, heads: 4, intermediate: 64, vocabSize: 100) with { MaxPositionEmbeddings = 16 };
        using (var model = Models.BertTaskModel.Create(config, Models.BertTask.SequenceClassification))
        {
            var mask = new Pruning.PruningMask([[true, true, false, true], [true, false, false, true]], [new bool[64].Select((_, i) => i < 40).ToArray(), Enumerable.Repeat(true, 64).ToArray()],
                Enumerable.Range(0, 32).Select(i => i < 24).ToArray());
            using var pruned = Pruning.StructuredPruning.Shrink(model, mask);
            Models.BertCheckpoint.Save(pruned, Path.Combine(tmp.Dir, "pruned"), tokenizer: null);
        }
        var r = Run(tmp.Dir, "inspect", "pruned");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("hidden 24, heads 4 x 8", r.Out);
        Assert.Contains("per layer: heads [3, 2], FFN [40, 64]", r.Out);
    }

    [Fact]
    public void PredictRunsEachHead()
    {
        using var tmp = new TestData.TempDir();
        var vocab = TestData.Path("tokenizers", "bert-base-uncased", "vocab.txt");
        Assert.Equal(0, Run(tmp.Dir, "init", "--layers", "1", "--hidden", "32", "--heads", "2", "--task", "SequenceClassification", "--num-labels", "3", "--vocab", vocab, "--out", "cls").ExitCode);
        var cls = Run(tmp.Dir, "predict", "cls", "--text", "a fine film", "--text-pair", "a good movie");
        Assert.True(cls.ExitCode == 0, cls.Err);
        Assert.Contains("LABEL_2", cls.Out);

        Assert.Equal(0, Run(tmp.Dir, "init", "--layers", "1", "--hidden", "32", "--heads", "2", "--task", "SequenceClassification", "--num-labels", "1", "--vocab", vocab, "--out", "reg").ExitCode);
        var reg = Run(tmp.Dir, "predict", "reg", "--text", "a", "--text-pair", "b");
        Assert.True(reg.ExitCode == 0, reg.Err);
        Assert.Contains("score:", reg.Out);

        Assert.Equal(0, Run(tmp.Dir, "init", "--layers", "1", "--hidden", "32", "--heads", "2", "--task", "QuestionAnswering", "--vocab", vocab, "--out", "qa").ExitCode);
        var qa = Run(tmp.Dir, "predict", "qa", "--text", "who wrote it?", "--text-pair", "it was written by jane austen in 1815.");
        Assert.True(qa.ExitCode == 0, qa.Err);
        Assert.Contains("answer:", qa.Out);
        AssertOneLineError(Run(tmp.Dir, "predict", "qa", "--text", "who wrote it?"), "--text-pair");

        // Input longer than the position table: truncated, with a warning, not a crash.
        Assert.Equal(0, Run(tmp.Dir, "init", "--layers", "1", "--hidden", "32", "--heads", "2", "--max-positions", "16", "--vocab", vocab, "--out", "short").ExitCode);
        var longInput = Run(tmp.Dir, "fill-mask", "short", string.Join(' ', Enumerable.Repeat("word", 40)) + " [MASK]");
        Assert.Equal(1, longInput.ExitCode);   // the [MASK] was cut off: that is the error, named
        Assert.Contains("no [MASK]", longInput.Err);
        var cut = Run(tmp.Dir, "fill-mask", "short", "[MASK] " + string.Join(' ', Enumerable.Repeat("word", 40)));
        Assert.True(cut.ExitCode == 0, cut.Err);
        Assert.Contains("warning: input truncated to 16 tokens", cut.Err);
    }

    /// <summary>
    /// The repository's <c>./distillery</c> wrapper, run in a copy of the repository's layout with a stand-in <c>dotnet</c>
    /// on PATH that counts builds and writes a stand-in executable (a real Release build would take a minute): it
    /// builds when there is no binary, not again when only generated files under obj/ and bin/ are newer (what a Debug
    /// build, e.g. <c>dotnet test</c>, leaves behind), once when a compiled source changed, and not after that.
    /// </summary>
    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]   // a bash script, like the linux-x64 build it wraps
    public void WrapperScriptRebuildsOnlyWhenACompiledSourceChanges()
    {
        using var tmp = new TestData.TempDir();
        string root = tmp["repo"], log = tmp["builds.log"], fakeBin = tmp["fake-bin"];
        foreach (var dir in new[] { "src/Distillery/Export", "src/Distillery.Cli", "build", "fake-bin" }) Directory.CreateDirectory(Path.Combine(root, dir));
        Directory.CreateDirectory(fakeBin);
        File.Copy(Path.Combine(RepositoryRoot(), "distillery"), Path.Combine(root, "distillery"));
        string[] sources = ["src/Distillery/Quickstart.cs", "src/Distillery/Export/onnx.proto", "src/Distillery.Cli/Distillery.Cli.csproj", "build/PatchLibTorchSharp.cs",
            "Directory.Build.props", "Directory.Packages.props", "Directory.Build.targets"];
        foreach (var source in sources) File.WriteAllText(Path.Combine(root, source), "// source\n");
        // `dotnet build <project dir> -c Release ...`: record the call, write the executable where the wrapper runs it.
        File.WriteAllText(Path.Combine(fakeBin, "dotnet"), $$"""
            #!/usr/bin/env bash
            echo "$*" >> '{{log}}'
            out="$2/bin/Release/net10.0/linux-x64"
            mkdir -p "$out"
            printf '#!/usr/bin/env bash\necho "distillery usage $*"\n' > "$out/Distillery.Cli"
            chmod +x "$out/Distillery.Cli"
            """);
        File.SetUnixFileMode(Path.Combine(fakeBin, "dotnet"), (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(Path.Combine(root, "distillery"), (UnixFileMode)0b111_101_101);

        (string Out, string Err) Wrapper()
        {
            var start = new ProcessStartInfo("bash") { WorkingDirectory = tmp.Dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            start.ArgumentList.Add(Path.Combine(root, "distillery"));
            start.ArgumentList.Add("--help");
            start.Environment["PATH"] = fakeBin + ":" + Environment.GetEnvironmentVariable("PATH");
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            Assert.True(process.WaitForExit(TimeSpan.FromMinutes(1)), "./distillery did not finish");
            Assert.True(process.ExitCode == 0, stderr.Result);
            Assert.Contains("distillery usage --help", stdout.Result);
            return (stdout.Result, stderr.Result);
        }
        int Builds() => File.Exists(log) ? File.ReadAllLines(log).Length : 0;
        // Sources and the last build well in the past, so that "newer" below never depends on clock granularity.
        void Age()
        {
            var past = DateTime.UtcNow.AddMinutes(-30);
            foreach (var source in sources) File.SetLastWriteTimeUtc(Path.Combine(root, source), past.AddMinutes(-1));
            foreach (var built in Directory.GetFiles(Path.Combine(root, "src/Distillery.Cli/bin/Release"), "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
                File.SetLastWriteTimeUtc(built, past);
        }

        Assert.Contains("building", Wrapper().Err);   // no binary yet
        Assert.Equal(1, Builds());
        Assert.Contains("src/Distillery.Cli -c Release", File.ReadAllText(log));
        Age();
        Assert.DoesNotContain("building", Wrapper().Err);
        Assert.Equal(1, Builds());

        // What `dotnet test` leaves behind: generated .cs (and other files) under obj/ and bin/ of Debug builds, all newer.
        foreach (var generated in new[] { "src/Distillery/obj/Debug/net10.0/linux-x64/Distillery.AssemblyInfo.cs", "src/Distillery/obj/Debug/net10.0/linux-x64/Onnx.cs",
            "src/Distillery.Cli/obj/Debug/net10.0/linux-x64/Distillery.Cli.GlobalUsings.g.cs", "src/Distillery/bin/Debug/net10.0/linux-x64/Distillery.deps.json",
            "src/Distillery.Cli/obj/project.assets.json", "src/Distillery/obj/Distillery.csproj.nuget.g.props" })
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(root, generated))!);
            File.WriteAllText(Path.Combine(root, generated), "// generated\n");
        }
        for (int call = 0; call < 2; call++) Assert.DoesNotContain("building", Wrapper().Err);
        Assert.Equal(1, Builds());

        // A compiled source changes: one build, then none.
        foreach (var changed in new[] { "src/Distillery/Quickstart.cs", "src/Distillery/Export/onnx.proto", "Directory.Packages.props" })
        {
            File.SetLastWriteTimeUtc(Path.Combine(root, changed), DateTime.UtcNow);
            int before = Builds();
            Assert.Contains("building", Wrapper().Err);
            Assert.Equal(before + 1, Builds());
            Assert.DoesNotContain("building", Wrapper().Err);
            Assert.Equal(before + 1, Builds());
            Age();
        }
    }

    [Fact]
    public void BadInputGivesOneLineAndExitCodeOne()
    {
        using var tmp = new TestData.TempDir();
        var vocab = TestData.Path("tokenizers", "bert-base-uncased", "vocab.txt");
        AssertOneLineError(Run(tmp.Dir, "inspect", "nowhere"), "nowhere", "model folder not found");

        var badArch = Run(tmp.Dir, "init", "--arch", "L2H128", "--vocab", vocab, "--out", "x");
        AssertOneLineError(badArch, "L2H128", "L4-H256");
        Assert.False(Directory.Exists(Path.Combine(tmp.Dir, "x")));

        var indivisible = Run(tmp.Dir, "init", "--layers", "1", "--hidden", "30", "--heads", "4", "--vocab", vocab, "--out", "y");
        AssertOneLineError(indivisible, "hidden_size 30 is not divisible by num_attention_heads 4");
        Assert.False(Directory.Exists(Path.Combine(tmp.Dir, "y")));

        AssertOneLineError(Run(tmp.Dir, "init", "--arch", "L1-H64", "--vocab", "missing-vocab.txt", "--out", "z"), "missing-vocab.txt");
        Assert.False(Directory.Exists(Path.Combine(tmp.Dir, "z")));

        Assert.Equal(0, Run(tmp.Dir, "init", "--layers", "1", "--hidden", "32", "--heads", "2", "--vocab", vocab, "--out", "good").ExitCode);
        void Copy(string to)
        {
            Directory.CreateDirectory(Path.Combine(tmp.Dir, to));
            foreach (var f in Directory.GetFiles(Path.Combine(tmp.Dir, "good"))) File.Copy(f, Path.Combine(tmp.Dir, to, Path.GetFileName(f)));
        }

        Copy("no-vocab");
        File.Delete(Path.Combine(tmp.Dir, "no-vocab", "vocab.txt"));
        AssertOneLineError(Run(tmp.Dir, "fill-mask", "no-vocab", "a [MASK]"), "vocab.txt missing");

        Copy("short-vocab");
        var lines = File.ReadAllLines(Path.Combine(tmp.Dir, "short-vocab", "vocab.txt"));
        File.WriteAllLines(Path.Combine(tmp.Dir, "short-vocab", "vocab.txt"), lines[..^10]);
        AssertOneLineError(Run(tmp.Dir, "fill-mask", "short-vocab", "a [MASK]"), "30512 tokens", "vocab_size 30522");

        Copy("corrupt");
        string weights = Path.Combine(tmp.Dir, "corrupt", "model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        BitConverter.GetBytes((ulong)bytes.Length * 4).CopyTo(bytes, 0);   // header length beyond the file
        File.WriteAllBytes(weights, bytes);
        AssertOneLineError(Run(tmp.Dir, "inspect", "corrupt"), "model.safetensors");

        Copy("bad-offsets");
        string offsets = Path.Combine(tmp.Dir, "bad-offsets", "model.safetensors");
        var (entries, _) = Safetensors.ReadHeader(offsets);
        Assert.NotEmpty(entries);
        File.WriteAllBytes(offsets, File.ReadAllBytes(offsets)[..^16]);   // last tensor's bytes now run past the end
        AssertOneLineError(Run(tmp.Dir, "inspect", "bad-offsets"), "model.safetensors");

        AssertOneLineError(Run(tmp.Dir, "fill-mask", "good", "no mask here"), "no [MASK]");
        // Per-example dev predictions exist for GLUE only; asked for SQuAD, eval says so before loading anything.
        AssertOneLineError(Run(tmp.Dir, "eval", "good", "--task", "squad", "--data", TestData.Path("squad", "dev-v1.1.json"), "--predictions", "p.json"),
            "GLUE tasks only");
        Assert.False(File.Exists(Path.Combine(tmp.Dir, "p.json")));
        AssertOneLineError(Run(tmp.Dir, "predict", "good", "--text", "a [MASK]", "--top-k", "0"), "top-k");

        var unknownCommand = Run(tmp.Dir, "distil");
        Assert.NotEqual(0, unknownCommand.ExitCode);
    }

    [Fact]
    public void DistillReadsConfigsAndGeneratedFlagsForEveryMethod()
    {
        using var tmp = new TestData.TempDir();
        // --config is read for corpus methods too (it was ignored for them): a misspelt option of the method is one line.
        File.WriteAllText(tmp["minilm.json"], """{"method": "minilm", "teacher": "t", "corpus": ["c.txt"], "out": "o", "mini_lm": {"relation_head": 2}}""");
        AssertOneLineError(Run(tmp.Dir, "distill", "--config", "minilm.json"), "minilm.json", "unknown key relation_head in mini_lm (did you mean relation_heads?)");
        // A method flag belongs to the methods whose options record has it; enum values are checked in one place.
        string[] task = ["--teacher", "t", "--task", "sst2", "--data", TestData.Path("glue"), "--out", "s"];
        AssertOneLineError(Run(tmp.Dir, ["distill", "--method", "theseus", "--alpha", "1", .. task]), "--alpha is not an option of theseus");
        AssertOneLineError(Run(tmp.Dir, ["distill", "--method", "theseus", "--scheduler", "sideways", .. task]), "--scheduler: \"sideways\" is not one of constant, linear, anti");
        AssertOneLineError(Run(tmp.Dir, ["distill", "--method", "minilm", .. task]), "distils on a corpus: leave out the task flags");
        AssertOneLineError(Run(tmp.Dir, ["distill", "--method", "kd", .. task]), "kd needs a student");
        var help = Run(tmp.Dir, "distill", "--help");
        Assert.Contains("--successor-init", help.Out);
        Assert.Contains("theseus: Slope k per optimizer step (default 0.0006)", System.Text.RegularExpressions.Regex.Replace(help.Out, @"\s+", " "));
    }
}
