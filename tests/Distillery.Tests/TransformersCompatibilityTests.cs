using System.Text.Json.Nodes;
using Distillery.Models;
using Distillery.Pruning;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>
/// Pruned checkpoints keep the config fields transformers' BertConfig reads: a uniform FFN width is written as
/// intermediate_size (so BertFor*.from_pretrained builds matching Linear shapes), head pruning as pruned_heads with
/// hidden_size = heads x head size, and shapes transformers cannot represent are reported instead of written silently.
/// </summary>
public sealed class TransformersCompatibilityTests
{
    static BertConfig Config() => BertConfig.Create(layers: 2, hidden: 32, heads: 4, intermediate: 64, vocabSize: 50) with { MaxPositionEmbeddings = 16 };

    static (JsonObject Json, BertConfig Config) SavePruned(Func<BertConfig, PruningMask> mask)
    {
        using var tmp = new TestData.TempDir();
        manual_seed(1);
        using var model = BertTaskModel.Create(Config(), BertTask.SequenceClassification);
        using var pruned = StructuredPruning.Shrink(model, mask(model.Config));
        BertCheckpoint.Save(pruned, tmp.Dir, tokenizer: null);
        var json = JsonNode.Parse(File.ReadAllText(tmp["config.json"]))!.AsObject();
        var (reloaded, _) = BertCheckpoint.Load(tmp.Dir);   // the folder still loads in Distillery, shapes and all
        reloaded.Dispose();
        return (json, BertCheckpoint.ReadConfig(tmp.Dir));
    }

    static bool[] Keep(int total, int kept) => Enumerable.Range(0, total).Select(i => i < kept).ToArray();

    [Fact]
    public void UniformFfnPruningIsWrittenAsIntermediateSize()
    {
        var (json, config) = SavePruned(c => new PruningMask([Keep(4, 4), Keep(4, 4)], [Keep(64, 24), Keep(64, 24)]));
        Assert.Equal(24, (int)json["intermediate_size"]!);
        Assert.False(json.ContainsKey("distillery_layer_intermediate_sizes"));
        Assert.Null(config.TransformersIncompatibility());
    }

    [Fact]
    public void HeadPruningKeepsHiddenEqualToHeadsTimesHeadSizeAndListsPrunedHeads()
    {
        var (json, config) = SavePruned(c => new PruningMask([Keep(4, 2), Keep(4, 3)], [Keep(64, 64), Keep(64, 64)]));
        Assert.Equal(32, (int)json["hidden_size"]!);
        Assert.Equal(4, (int)json["num_attention_heads"]!);
        Assert.Equal(32, (int)json["hidden_size"]! / (int)json["num_attention_heads"]! * 4);
        var pruned = json["pruned_heads"]!.AsObject();
        Assert.Equal([2, 3], pruned["0"]!.AsArray().Select(n => (int)n!));
        Assert.Equal([3], pruned["1"]!.AsArray().Select(n => (int)n!));
        Assert.Null(config.TransformersIncompatibility());
    }

    [Fact]
    public void DifferentFfnWidthsAndPrunedHiddenSizeAreReportedAsDistilleryOnly()
    {
        var (json, config) = SavePruned(c => new PruningMask([Keep(4, 4), Keep(4, 4)], [Keep(64, 24), Keep(64, 40)]));
        Assert.Equal([24, 40], json["distillery_layer_intermediate_sizes"]!.AsArray().Select(n => (int)n!));
        var reason = config.TransformersIncompatibility();
        Assert.NotNull(reason);
        Assert.StartsWith("this model loads only in Distillery because ", reason);
        Assert.Contains("FFN widths (24, 40)", reason);

        var (hiddenJson, hiddenConfig) = SavePruned(c => new PruningMask([Keep(4, 4), Keep(4, 4)], [Keep(64, 64), Keep(64, 64)], Keep(32, 24)));
        Assert.Equal(24, (int)hiddenJson["hidden_size"]!);
        Assert.Contains("head size 8 x 4 heads is not its hidden size 24", hiddenConfig.TransformersIncompatibility());
    }
}
