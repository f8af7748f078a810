using System.Text.Json.Nodes;
using Distillery.Distillation;
using Distillery.Models;
using Distillery.Text;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>
/// <c>distillery extract</c> (<see cref="LayerExtraction"/>): a model of chosen layers of another, no training. Every
/// tensor of the result must be the source's tensor of the mapped layer (nothing left at its random init), the head and
/// a sentence-transformers folder's modules must come along, and bad layer lists must stop before anything is written.
/// Tiny 4-layer models built in the test.
/// </summary>
public sealed class ExtractTests
{
    /// <summary>A 4-layer tiny model of <paramref name="task"/> with random LayerNorms and biases (so a tensor left at its init shows), saved with its tokenizer.</summary>
    static void SaveSource(string dir, BertTask task)
    {
        InferenceApiTests.SaveTiny(dir, task);   // the vocabulary and tokenizer files
        manual_seed(5);
        using var model = BertTaskModel.Create(InferenceApiTests.Tiny() with { NumHiddenLayers = 4 }, task);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (name.Contains("LayerNorm") || name.EndsWith(".bias", StringComparison.Ordinal)) p.add_(randn_like(p) * 0.1);
        if (model is BertForSentenceEmbedding embedding)
        {
            embedding.SentenceConfig = new SentenceEmbeddingConfig { Pooling = SentencePooling.Cls, Normalize = true, MaxSeqLength = 24 };
            using var projection = randn(8, 32);
            embedding.Projection = projection;
        }
        BertCheckpoint.Save(model, dir, BertTextTokenizer.FromVocab(Path.Combine(dir, "vocab.txt")));
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    /// <summary>Asserts that every tensor of <paramref name="extracted"/> equals <paramref name="source"/>'s under the layer map.</summary>
    static void AssertCopied(BertTaskModel source, BertTaskModel extracted, int[] layers)
    {
        var sourceTensors = source.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        int compared = 0;
        foreach (var (name, tensor) in extracted.named_parameters())
        {
            string mapped = name;
            const string prefix = "bert.encoder.layer.";
            if (name.StartsWith(prefix, StringComparison.Ordinal))
            {
                int dot = name.IndexOf('.', prefix.Length);
                mapped = prefix + layers[int.Parse(name[prefix.Length..dot])] + name[dot..];
            }
            Assert.True(sourceTensors.TryGetValue(mapped, out var expected), $"{name}: no source tensor {mapped}");
            Assert.True(Same(expected!, tensor), $"{name} differs from the source's {mapped}");
            compared++;
        }
        Assert.Equal(extracted.parameters().Count(), compared);
    }

    [Theory]
    [InlineData(BertTask.MaskedLM)]
    [InlineData(BertTask.SequenceClassification)]
    public void ExtractedModelIsTheSourcesLayersInTheGivenOrderWithItsHead(BertTask task)
    {
        using var tmp = new TestData.TempDir();
        SaveSource(tmp["source"], task);
        int[] layers = [3, 0, 2];
        var config = LayerExtraction.Run(new ExtractOptions { Model = tmp["source"], Layers = layers, Out = tmp["l3"] });
        Assert.Equal(3, config.NumHiddenLayers);

        var (source, _) = BertCheckpoint.Load(tmp["source"]);
        var (extracted, report) = BertCheckpoint.Load(tmp["l3"]);
        using (source)
        using (extracted)
        {
            Assert.Equal(task, extracted.Task);
            Assert.Empty(report.Initialized);
            AssertCopied(source, extracted, layers);
            Assert.Equal(source.Config.Labels, extracted.Config.Labels);
        }
        Assert.True(File.Exists(tmp["l3/vocab.txt"]));
        var record = JsonNode.Parse(File.ReadAllText(tmp["l3/extract.json"]))!;
        Assert.Equal(layers, record["layers"]!.AsArray().Select(n => n!.GetValue<int>()));
        Assert.Equal(4, record["source_layers"]!.GetValue<int>());
    }

    [Fact]
    public void ASentenceTransformersFolderKeepsItsPoolingAndDenseModule()
    {
        using var tmp = new TestData.TempDir();
        SaveSource(tmp["source"], BertTask.SentenceEmbedding);
        LayerExtraction.Run(new ExtractOptions { Model = tmp["source"], Layers = [0, 2], Out = tmp["l2"] });
        Assert.True(File.Exists(tmp["l2/modules.json"]));
        var (source, _) = BertCheckpoint.Load(tmp["source"]);
        var (extracted, _) = BertCheckpoint.Load(tmp["l2"]);
        using (source)
        using (extracted)
        {
            var s = Assert.IsType<BertForSentenceEmbedding>(source);
            var e = Assert.IsType<BertForSentenceEmbedding>(extracted);
            Assert.Equal(s.SentenceConfig, e.SentenceConfig);
            Assert.Equal(SentencePooling.Cls, e.SentenceConfig.Pooling);
            Assert.NotNull(e.Projection);
            Assert.True(Same(s.Projection!, e.Projection!));
            Assert.Equal(8, e.EmbeddingDimension);
            AssertCopied(source, extracted, [0, 2]);
        }
    }

    /// <summary>
    /// A bare encoder folder (config.json naming BertModel, no modules.json: all-MiniLM-L6-v2 as `distillery import
    /// teacher` writes it) is a sentence embedding, so its layers come out as one too, with no masked-LM head: it was
    /// read as a masked-LM model with a random head, which `distillery reduce` then refused.
    /// </summary>
    [Fact]
    public void ABareEncoderFolderIsExtractedAsASentenceEmbeddingWithoutAHead()
    {
        using var tmp = new TestData.TempDir();
        SaveSource(tmp["st"], BertTask.SentenceEmbedding);
        Directory.CreateDirectory(tmp["source"]);
        foreach (var f in new[] { "config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json" })
            if (File.Exists(Path.Combine(tmp["st"], f))) File.Copy(Path.Combine(tmp["st"], f), Path.Combine(tmp["source"], f));
        Assert.False(File.Exists(tmp["source/modules.json"]));
        Assert.Contains("\"BertModel\"", File.ReadAllText(tmp["source/config.json"]));
        Assert.Equal(BertTask.SentenceEmbedding, BertCheckpoint.TaskOf(tmp["source"], BertCheckpoint.ReadConfig(tmp["source"])));

        LayerExtraction.Run(new ExtractOptions { Model = tmp["source"], Layers = [1, 3], Out = tmp["l2"] });
        var (source, _) = BertCheckpoint.Load(tmp["source"]);
        var (extracted, _) = BertCheckpoint.Load(tmp["l2"]);
        using (source)
        using (extracted)
        {
            var e = Assert.IsType<BertForSentenceEmbedding>(extracted);
            Assert.Equal(SentencePooling.Mean, e.SentenceConfig.Pooling);   // a plain encoder's: mean + normalisation
            Assert.DoesNotContain(extracted.named_parameters(), p => p.name.StartsWith("cls.", StringComparison.Ordinal));
            AssertCopied(source, extracted, [1, 3]);
        }
    }

    [Fact]
    public void TheCommandWritesTheModelAndRefusesBadLayersWithOneLineAndNoOutput()
    {
        using var tmp = new TestData.TempDir();
        SaveSource(tmp["source"], BertTask.MaskedLM);
        var ok = CliTests.Run(tmp.Dir, "extract", "--model", "source", "--layers", "0,2", "--out", "l2");
        Assert.True(ok.ExitCode == 0, ok.Err);
        Assert.Contains("layers 0,2 of source", ok.Out);
        Assert.Equal(2, BertCheckpoint.ReadConfig(tmp["l2"]).NumHiddenLayers);

        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "extract", "-m", "source", "--layers", "0,4", "-o", "bad"), "layer 4 does not exist", "0..3");
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "extract", "-m", "source", "--layers", "1,1", "-o", "bad"), "repeat");
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "extract", "-m", "source", "--layers", "0,x", "-o", "bad"), "\"x\" is not a layer index");
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "extract", "-m", "source", "--layers", "0", "-o", "source/inner"), "--out");
        Assert.False(Directory.Exists(tmp["bad"]) && File.Exists(tmp["bad/config.json"]));
        Assert.False(File.Exists(tmp["source/inner/config.json"]));
        // A finished output is not replaced without --overwrite.
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "extract", "-m", "source", "--layers", "1", "-o", "l2"), "l2");
        Assert.Equal(2, BertCheckpoint.ReadConfig(tmp["l2"]).NumHiddenLayers);
    }
}
