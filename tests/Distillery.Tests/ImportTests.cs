using Distillery.Export;
using Distillery.Export.Onnx;
using Distillery.Import;
using Distillery.Models;
using Distillery.Text;
using TorchSharp;
using static TorchSharp.torch;
using Google.Protobuf;
using DataType = Distillery.Export.Onnx.TensorProto.Types.DataType;

namespace Distillery.Tests;

/// <summary>
/// The ONNX importer on graphs written the way PyTorch's exporter writes BERT (anonymous transposed MatMul weights
/// followed by an Add of the named bias, heads in a Reshape's Concat, decomposed LayerNorm, Erf GELU, pooler Gemm with
/// transB), built here from a tiny model's weights: the mapping recovers every tensor exactly, the config is read off
/// the graph, the imported folder matches ONNX Runtime on the source graph, and unmappable graphs are one clear line.
/// </summary>
public sealed class ImportTests
{
    static BertConfig TinyConfig(HiddenActivation act = HiddenActivation.Gelu, double eps = 1e-12, int heads = 4) =>
        BertConfig.Create(layers: 2, hidden: 32, heads: heads, intermediate: 48, vocabSize: 40) with
        {
            MaxPositionEmbeddings = 24, TypeVocabSize = 2, HiddenAct = act, LayerNormEps = eps, InitializerRange = 0.2,
        };

    static BertTaskModel TinyModel(BertConfig config, int seed = 3)
    {
        manual_seed(seed);
        var model = BertTaskModel.Create(config, BertTask.SequenceClassification);
        using (no_grad()) foreach (var p in model.parameters()) if (p.dim() == 1) p.add_(randn_like(p) * 0.1);
        model.eval();
        return model;
    }

    /// <summary>The model's encoder + pooler parameters by BertModel name ("bert." removed).</summary>
    static Dictionary<string, (float[] Data, long[] Shape)> Encoder(BertTaskModel model) =>
        model.named_parameters().Where(p => p.name.StartsWith("bert.", StringComparison.Ordinal))
            .ToDictionary(p => p.name["bert.".Length..], p => (p.parameter.detach().contiguous().data<float>().ToArray(), p.parameter.shape));

    /// <summary>Options of the PyTorch-style writer, to make graphs the importer must reject.</summary>
    sealed record Style(bool AnonymousBias = false, bool DynamicHeads = false, bool NamedTransposedWeights = false, bool ScaleOutput = false);

    /// <summary>
    /// Writes <paramref name="model"/> as torch.onnx.export (opset 13) writes transformers' BertModel: see the class summary.
    /// </summary>
    static ModelProto PyTorchStyleGraph(BertTaskModel model, Style? style = null)
    {
        style ??= new Style();
        var c = model.Config;
        var p = Encoder(model);
        var g = new OnnxGraphBuilder();
        int anonymous = 900;
        string Named(string name) => g.Initializer(name, p[name].Data, p[name].Shape);
        string Linear(string x, string prefix)
        {
            var (w, shape) = p[prefix + ".weight"];   // [out, in]
            int rows = (int)shape[0], cols = (int)shape[1];
            var wt = new float[w.Length];
            for (int r = 0; r < rows; r++) for (int k = 0; k < cols; k++) wt[k * rows + r] = w[r * cols + k];
            string product;
            if (style.NamedTransposedWeights)
                product = g.Node("MatMul", [x, g.Node("Transpose", [Named(prefix + ".weight")], "t", OnnxGraphBuilder.Ints("perm", 1, 0))], "mm");
            else
                product = g.Node("MatMul", [x, g.Initializer($"onnx::MatMul_{anonymous++}", wt, cols, rows)], "mm");
            string bias = style.AnonymousBias ? g.Initializer($"{anonymous++}", p[prefix + ".bias"].Data, rows) : Named(prefix + ".bias");
            return g.Node("Add", [bias, product], "lin");
        }
        string LayerNorm(string x, string prefix)
        {
            string mean = g.Node("ReduceMean", [x], "mean", OnnxGraphBuilder.Ints("axes", -1));
            string centred = g.Node("Sub", [x, mean], "centred");
            string variance = g.Node("ReduceMean", [g.Node("Pow", [centred, g.Scalar(2f)], "sq")], "var", OnnxGraphBuilder.Ints("axes", -1));
            string std = g.Node("Sqrt", [g.Node("Add", [variance, g.Scalar((float)c.LayerNormEps)], "vareps")], "std");
            return g.Node("Add", [g.Node("Mul", [g.Node("Div", [centred, std], "norm"), Named(prefix + ".weight")], "scaled"), Named(prefix + ".bias")], "ln");
        }
        string Dim(string x, long axis) => g.Node("Unsqueeze", [g.Node("Gather", [g.Node("Shape", [x], "shape"), g.Int64Scalar(axis)], "dim", OnnxGraphBuilder.Int("axis", 0)), g.Int64s(0)], "dimu");
        string SplitHeads(string x, long[] perm)
        {
            string heads = style.DynamicHeads ? Dim(x, 2) : g.Int64s(c.NumAttentionHeads);
            string shape = g.Node("Concat", [Dim(x, 0), Dim(x, 1), heads, g.Int64s(c.HeadSize)], "split_shape", OnnxGraphBuilder.Int("axis", 0));
            return g.Node("Transpose", [g.Node("Reshape", [x, shape], "split")], "heads", OnnxGraphBuilder.Ints("perm", perm));
        }

        string ids = g.Input("input_ids", DataType.Int64, "batch", "sequence");
        string mask = g.Input("attention_mask", DataType.Int64, "batch", "sequence");
        string types = g.Input("token_type_ids", DataType.Int64, "batch", "sequence");
        string additive = g.Node("Mul", [g.Node("Sub", [g.Scalar(1f), g.Node("Cast", [g.Node("Unsqueeze", [mask, g.Int64s(1, 2)], "m4")], "mf", OnnxGraphBuilder.Int("to", 1))], "inv"), g.Scalar(-10000f)], "additive");
        var positionIds = Enumerable.Range(0, c.MaxPositionEmbeddings).Select(i => (long)i).ToArray();
        string positionTable = g.Initializer("embeddings.position_ids", positionIds, 1, c.MaxPositionEmbeddings);
        string positions = g.Node("Slice", [positionTable, g.Int64s(0), Dim(ids, 1), g.Int64s(1)], "positions");
        string embedded = g.Node("Add", [
            g.Node("Add", [g.Node("Gather", [Named("embeddings.word_embeddings.weight"), ids], "words"), g.Node("Gather", [Named("embeddings.token_type_embeddings.weight"), types], "types")], "wt"),
            g.Node("Gather", [Named("embeddings.position_embeddings.weight"), positions], "pos")], "emb");
        string hidden = LayerNorm(embedded, "embeddings.LayerNorm");
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string pre = $"encoder.layer.{l}.";
            string q = SplitHeads(Linear(hidden, pre + "attention.self.query"), [0, 2, 1, 3]);
            string k = SplitHeads(Linear(hidden, pre + "attention.self.key"), [0, 2, 3, 1]);
            string v = SplitHeads(Linear(hidden, pre + "attention.self.value"), [0, 2, 1, 3]);
            string scores = g.Node("Add", [g.Node("Div", [g.Node("MatMul", [q, k], "qk"), g.Scalar(MathF.Sqrt(c.HeadSize))], "scaled"), additive], "masked");
            string context = g.Node("MatMul", [g.Node("Softmax", [scores], "probs", OnnxGraphBuilder.Int("axis", -1)), v], "ctx");
            context = g.Node("Transpose", [context], "ctx_t", OnnxGraphBuilder.Ints("perm", 0, 2, 1, 3));
            context = g.Node("Reshape", [context, g.Node("Concat", [Dim(context, 0), Dim(context, 1), g.Int64s(c.NumAttentionHeads * c.HeadSize)], "merge_shape", OnnxGraphBuilder.Int("axis", 0))], "merged");
            string attended = LayerNorm(g.Node("Add", [Linear(context, pre + "attention.output.dense"), hidden], "res1"), pre + "attention.output.LayerNorm");
            string inner = Linear(attended, pre + "intermediate.dense");
            string activated = c.HiddenAct switch
            {
                HiddenActivation.Gelu => g.Node("Mul", [g.Node("Mul", [inner, g.Node("Add", [g.Node("Erf", [g.Node("Div", [inner, g.Scalar(MathF.Sqrt(2f))], "d")], "erf"), g.Scalar(1f)], "e1")], "m"), g.Scalar(0.5f)], "gelu"),
                HiddenActivation.GeluTanh => g.Node("Mul", [g.Node("Mul", [inner, g.Scalar(0.5f)], "half"), g.Node("Add", [g.Scalar(1f), g.Node("Tanh", [g.Node("Mul", [g.Scalar(MathF.Sqrt(2f / MathF.PI)), g.Node("Add", [inner, g.Node("Mul", [g.Scalar(0.044715f), g.Node("Pow", [inner, g.Scalar(3f)], "cube")], "c")], "inner3")], "arg")], "tanh")], "t1")], "gelu_tanh"),
                HiddenActivation.Relu => g.Node("Relu", [inner], "relu"),
                _ => g.Node("Mul", [inner, g.Node("Sigmoid", [inner], "sig")], "silu"),
            };
            hidden = LayerNorm(g.Node("Add", [Linear(activated, pre + "output.dense"), attended], "res2"), pre + "output.LayerNorm");
        }
        string lastHidden = style.ScaleOutput ? g.Node("Mul", [hidden, g.Scalar(2f)], "scaled_output") : hidden;
        g.Output(lastHidden, DataType.Float, "batch", "sequence", c.HiddenSize);
        string cls = g.Node("Gather", [hidden, g.Int64Scalar(0)], "cls", OnnxGraphBuilder.Int("axis", 1));
        string pooled = g.Node("Tanh", [g.Node("Gemm", [cls, Named("pooler.dense.weight"), Named("pooler.dense.bias")], "gemm", OnnxGraphBuilder.Int("transB", 1))], "pooled");
        g.Output(pooled, DataType.Float, "batch", c.HiddenSize);
        var proto = new ModelProto { IrVersion = 7, ProducerName = "pytorch", ProducerVersion = "1.10", Graph = g.Graph };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
        return proto;
    }

    static string TinyVocab(string dir, int size)
    {
        var tokens = new List<string> { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };
        string[] words = ["the", "film", "is", "good", "bad", "a", "movie", "not", "very", "fun", "dull", "and", "it", "was", "great", "plot", "acting", "story", "he", "she", "said", "that", "of", "to", "in", ".", ",", "!", "?", "##s", "##ly", "##ed", "##ing", "on", "for"];
        tokens.AddRange(words);
        while (tokens.Count < size) tokens.Add($"w{tokens.Count}");
        string path = Path.Combine(dir, "vocab-source.txt");
        File.WriteAllText(path, string.Join("\r\n", tokens.Take(size)) + "\r\n");   // CRLF, as the NuGet copy has it
        return path;
    }

    [Theory]
    [InlineData(HiddenActivation.Gelu, 1e-12, 4)]
    [InlineData(HiddenActivation.GeluTanh, 1e-5, 2)]
    [InlineData(HiddenActivation.Relu, 1e-6, 8)]
    public void ImportRecoversEveryTensorAndTheConfigFromThePyTorchStyleGraph(HiddenActivation act, double eps, int heads)
    {
        var config = TinyConfig(act, eps, heads);
        using var model = TinyModel(config);
        var imported = OnnxBertImporter.Import(PyTorchStyleGraph(model), "tiny.onnx");
        var c = imported.Config;
        Assert.Equal((config.NumHiddenLayers, config.HiddenSize, config.NumAttentionHeads, config.HeadSize, config.IntermediateSize),
            (c.NumHiddenLayers, c.HiddenSize, c.NumAttentionHeads, c.HeadSize, c.IntermediateSize));
        Assert.Equal(act, c.HiddenAct);
        Assert.Equal(eps, c.LayerNormEps, 1e-9 * eps);
        Assert.Equal((config.MaxPositionEmbeddings, config.TypeVocabSize, config.VocabSize), (c.MaxPositionEmbeddings, c.TypeVocabSize, c.VocabSize));
        Assert.Equal(["BertModel"], c.Architectures);

        var expected = Encoder(model);
        Assert.Equal(expected.Keys.Order(), imported.Tensors.Keys.Order());
        foreach (var (name, (data, shape)) in expected)
        {
            Assert.Equal(shape, imported.Tensors[name].Shape);
            Assert.True(data.AsSpan().SequenceEqual(imported.Tensors[name].Data), $"{name} differs");
        }
    }

    [Fact]
    public void ImportedFolderMatchesOnnxRuntimeOnTheSourceGraphAndLoadsForFineTuning()
    {
        using var tmp = new TestData.TempDir();
        var config = TinyConfig();
        using var model = TinyModel(config);
        var graph = PyTorchStyleGraph(model);
        byte[] bytes = graph.ToByteArray();
        string vocab = TinyVocab(tmp.Dir, config.VocabSize);
        string folder = tmp["imported"];
        (string, string?)[] texts = [("the film is good .", null), ("it was not very fun !", null), ("the plot", "the acting and the story were dull ."), ("great", "bad")];
        var imported = OnnxBertImporter.Import(OnnxBertImporter.Parse(bytes, "tiny.onnx"), "tiny.onnx");
        OnnxBertImporter.Save(imported, vocab, folder);
        var parity = ImportParity.Check(bytes, folder, texts, "test sentences", batchSize: 3, maxLength: 16);
        Assert.True(parity.MaxHiddenDiff <= ImportParity.Tolerance, $"last_hidden_state differs by {parity.MaxHiddenDiff}");
        Assert.True(parity.MaxPoolerDiff <= ImportParity.Tolerance, $"pooler differs by {parity.MaxPoolerDiff}");
        Assert.True(parity.Tokens > 10);

        // The folder: vocab with \n endings, a tokenizer config, and it loads as a classification model (new head only).
        Assert.DoesNotContain("\r", File.ReadAllText(Path.Combine(folder, "vocab.txt")));
        Assert.True(File.Exists(Path.Combine(folder, "tokenizer_config.json")));
        var (loaded, report) = BertCheckpoint.Load(folder, BertTask.SequenceClassification);
        using (loaded)
            Assert.All(report.Initialized, name => Assert.StartsWith("classifier.", name));
        Assert.Throws<IOException>(() => OnnxBertImporter.Save(imported, vocab, folder));   // never overwrites
    }

    [Fact]
    public void AGraphTheImportDoesNotReproduceIsNotWritten()
    {
        // Post-processing the importer does not represent (the output scaled by 2): every weight maps and the config
        // reads fine, but the parity check against ONNX Runtime fails, so no folder may appear.
        using var tmp = new TestData.TempDir();
        using var model = TinyModel(TinyConfig());
        byte[] bytes = PyTorchStyleGraph(model, new Style(ScaleOutput: true)).ToByteArray();
        string vocab = TinyVocab(tmp.Dir, 40);
        string folder = tmp["imported"];
        var source = new RealTeacher.ImportSource("scaled.onnx", "0", new System.Text.Json.Nodes.JsonObject());
        var error = Assert.Throws<InvalidDataException>(() => RealTeacher.ImportOnnx(bytes, source, vocab, folder));
        Assert.Contains("not written", error.Message);
        Assert.False(Directory.Exists(folder));
        Assert.Empty(Directory.GetDirectories(tmp.Dir));   // no temporary sibling left behind either
    }

    [Fact]
    public void AMatMulWhoseBiasIsUnnamedIsRejectedNamingTheNode()
    {
        using var model = TinyModel(TinyConfig());
        var error = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Import(PyTorchStyleGraph(model, new Style(AnonymousBias: true)), "bad.onnx"));
        Assert.StartsWith("bad.onnx: node ", error.Message);
        Assert.Contains("(MatMul)", error.Message);
        Assert.Contains("cannot be recovered", error.Message);
        Assert.DoesNotContain("\n", error.Message);
    }

    [Fact]
    public void HeadsComputedAtRunTimeAreRejectedNamingTheReshape()
    {
        using var model = TinyModel(TinyConfig());
        var error = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Import(PyTorchStyleGraph(model, new Style(DynamicHeads: true)), "dyn.onnx"));
        Assert.Contains("(Reshape)", error.Message);
        Assert.Contains("heads", error.Message);
    }

    [Fact]
    public void NamedWeightsBehindATransposeImportAsTheyAre()
    {
        using var model = TinyModel(TinyConfig());
        var imported = OnnxBertImporter.Import(PyTorchStyleGraph(model, new Style(NamedTransposedWeights: true)), "named.onnx");
        var expected = Encoder(model);
        foreach (var (name, (data, _)) in expected)
            Assert.True(data.AsSpan().SequenceEqual(imported.Tensors[name].Data), $"{name} differs");
    }

    [Fact]
    public void DamagedOrForeignFilesAreOneClearLine()
    {
        using var tmp = new TestData.TempDir();
        var parse = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Parse([0x0A, 0xFF, 0xFF, 0xFF, 0x0F, 1, 2], "junk.onnx"));
        Assert.StartsWith("junk.onnx: ", parse.Message);

        // A graph that is not BERT at all (one Relu).
        var g = new OnnxGraphBuilder();
        string x = g.Input("x", DataType.Float, "n");
        g.Output(g.Node("Relu", [x], "y"), DataType.Float, "n");
        var foreign = new ModelProto { IrVersion = 7, Graph = g.Graph };
        var error = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Import(foreign, "relu.onnx"));
        Assert.StartsWith("relu.onnx: ", error.Message);

        // Assemblies: a text file is not one; the test assembly embeds no model, and the message lists what it has.
        string text = tmp["not-an-assembly.dll"];
        File.WriteAllText(text, "hello");
        Assert.StartsWith(text, Assert.Throws<InvalidDataException>(() => AssemblyResources.Read(text, "x")).Message);
        string self = typeof(ImportTests).Assembly.Location;
        var missing = Assert.Throws<InvalidDataException>(() => AssemblyResources.Read(self, "Nope.model.onnx"));
        Assert.Contains("no embedded resource Nope.model.onnx", missing.Message);
    }

    [Fact]
    public void EmbeddedResourcesAreReadWithoutLoadingTheAssembly()
    {
        string self = typeof(ImportTests).Assembly.Location;
        var resources = AssemblyResources.List(self);
        var fixture = Assert.Single(resources, r => r.Name.EndsWith("import-resource.txt", StringComparison.Ordinal));
        byte[] bytes = AssemblyResources.Read(self, fixture.Name);
        Assert.Equal("an embedded resource, read from the PE file\n", System.Text.Encoding.UTF8.GetString(bytes));
        Assert.Equal(bytes.Length, fixture.Bytes);
    }
}
