using System.Text.Json.Nodes;
using Distillery.IO;
using Distillery.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>The model's structure and its Hugging Face checkpoint I/O, on tiny configs (hidden 32, 2 layers).</summary>
public sealed class BertModelTests
{
    internal static BertConfig Tiny(int vocab = 120) => BertConfig.Create(layers: 2, hidden: 32, heads: 4, intermediate: 64, vocabSize: vocab) with
    {
        MaxPositionEmbeddings = 40,
        Labels = ["negative", "positive", "neutral"],
    };

    static BertInputs RandomInputs(BertConfig config, int batch = 3, int length = 9, long seed = 7)
    {
        var generator = new Generator((ulong)seed);
        var ids = randint(1, config.VocabSize, [batch, length], dtype: ScalarType.Int64, generator: generator);
        var mask = ones(batch, length, dtype: ScalarType.Int64);
        mask[0, TensorIndex.Slice(5)] = 0;   // row 0 padded after 5 tokens
        var types = zeros(batch, length, dtype: ScalarType.Int64);
        types[1, TensorIndex.Slice(4)] = 1;
        return new BertInputs(ids, mask, types);
    }

    static double MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Fact]
    public void TinyArchNamesGiveTheWellReadStudentsShapes()
    {
        var c = BertArch.Parse("L2-H128");
        Assert.Equal((2, 128, 2, 512), (c.NumHiddenLayers, c.HiddenSize, c.NumAttentionHeads, c.IntermediateSize));
        var d = BertArch.Parse("L4-H128-A2-F384");
        Assert.Equal((4, 128, 2, 384), (d.NumHiddenLayers, d.HiddenSize, d.NumAttentionHeads, d.IntermediateSize));
        Assert.Equal(24, BertArch.GridNames.Count());
        Assert.Equal("L4-H128-F384", BertArch.NameOf(d with { NumAttentionHeads = 2 }));
        // Pruned models: the name says what the layers have, not the pre-pruning config fields.
        var pruned = BertArch.Parse("L2-H256") with { HiddenSize = 224, LayerHeads = [4, 4], LayerIntermediateSizes = [896, 896] };
        Assert.Equal("L2-H224-A4", BertArch.NameOf(pruned));
        Assert.Equal("L2-H224-A[4,0]-F[40,0]", BertArch.NameOf(pruned with { LayerHeads = [4, 0], LayerIntermediateSizes = [40, 0] }));
        var e = Assert.Throws<FormatException>(() => BertArch.Parse("L4H256"));
        Assert.Contains("L4-H256", e.Message);
    }

    [Fact]
    public void BertTinyHasTheKnownParameterCount()
    {
        // bert-tiny (L2-H128, 30522 vocab) is published as 4.4M parameters: BertModel with pooler = 4,385,920.
        using var model = BertTaskModel.Create(BertArch.Parse("L2-H128"), BertTask.SequenceClassification);
        var counts = ParameterCounts.Of(model);
        Assert.Equal(4_385_920, counts.Embeddings + counts.Encoder + counts.Pooler);
        Assert.Equal(128 * 2 + 2, counts.Head);
    }

    [Fact]
    public void InitFollowsBertInit()
    {
        var config = Tiny() with { InitializerRange = 0.02 };
        torch.manual_seed(0);
        using var model = BertTaskModel.Create(config, BertTask.MaskedLM);
        var p = model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        Assert.Equal(0.0, p["bert.encoder.layer.0.attention.self.query.bias"].abs().max().item<float>());
        Assert.Equal(1.0, p["bert.encoder.layer.1.output.LayerNorm.weight"].min().item<float>());
        Assert.Equal(0.0, p["bert.embeddings.word_embeddings.weight"][config.PadTokenId].abs().max().item<float>());
        double std = p["bert.encoder.layer.0.intermediate.dense.weight"].std().item<float>();
        Assert.InRange(std, 0.015, 0.025);
    }

    [Fact]
    public void ForwardOptionsReturnWhatWasAskedAndItIsConsistent()
    {
        using var scope = NewDisposeScope();
        var config = Tiny();
        torch.manual_seed(1);
        using var model = BertTaskModel.Create(config, BertTask.SequenceClassification);
        model.eval();
        using var _ = no_grad();
        var inputs = RandomInputs(config);
        var plain = model.forward(inputs);
        Assert.Null(plain.Encoder.HiddenStates);
        Assert.Null(plain.Encoder.Attentions);
        Assert.Equal([3L, 3L], plain.Logits.shape);

        var full = model.forward(inputs, new BertForwardOptions { OutputHiddenStates = true, OutputAttentions = true, OutputAttentionScores = true, OutputQueryKeyValue = true });
        Assert.Equal(3, full.Encoder.HiddenStates!.Count);
        Assert.Equal([3L, 4L, 9L, 9L], full.Encoder.Attentions![0].shape);
        Assert.Equal([3L, 4L, 9L, 8L], full.Encoder.Queries![1].shape);
        Assert.Equal(0.0, MaxDiff(full.Encoder.HiddenStates[^1], full.Encoder.LastHiddenState));
        // The plain forward takes the fused attention kernel: the same math, rounded differently; the explicit path is
        // what the extras come from, bit for bit.
        Assert.True(MaxDiff(plain.Logits, full.Logits) < 1e-5);
        Assert.Equal(0.0, MaxDiff(model.forward(inputs, new BertForwardOptions { ExplicitAttention = true }).Logits, full.Logits));

        // Layer 1's Q and K are computed from layer 1's input, which is hidden_states[1] (layer 0's output).
        for (int layer = 0; layer < 2; layer++)
        {
            var q = full.Encoder.Queries[layer];
            var k = full.Encoder.Keys![layer];
            var scores = matmul(q, k.transpose(-1, -2)) / Math.Sqrt(8);
            Assert.True(MaxDiff(scores, full.Encoder.AttentionScores![layer]) < 1e-5);
            var masked = scores + BertModel.AdditiveMask(inputs.AttentionMask!, ScalarType.Float32);
            Assert.True(MaxDiff(nn.functional.softmax(masked, -1), full.Encoder.Attentions[layer]) < 1e-6);
        }
        // Padded keys get exactly zero probability.
        Assert.Equal(0.0, full.Encoder.Attentions[0][0, TensorIndex.Colon, TensorIndex.Colon, TensorIndex.Slice(5)].abs().max().item<float>());
    }

    [Fact]
    public void HeadMaskOfZeroSilencesAHead()
    {
        using var scope = NewDisposeScope();
        var config = Tiny();
        using var model = BertTaskModel.Create(config, BertTask.QuestionAnswering);
        model.eval();
        using var _ = no_grad();
        var inputs = RandomInputs(config);
        var ones4 = ones(4);
        var reference = model.forward(inputs, new BertForwardOptions { HeadMask = [ones4, ones4] }).Logits;
        Assert.Equal(0.0, MaxDiff(reference, model.forward(inputs, new BertForwardOptions { ExplicitAttention = true }).Logits));
        Assert.True(MaxDiff(reference, model.forward(inputs).Logits) < 1e-5);   // the fused kernel (no head mask asked)
        var masked = model.forward(inputs, new BertForwardOptions { HeadMask = [tensor(new float[] { 1, 0, 1, 1 }), null] }).Logits;
        Assert.True(MaxDiff(reference, masked) > 1e-4);
    }

    [Fact]
    public void PerLayerHeadsAndFfnWidthsIncludingZeroWorkAndRoundTrip()
    {
        using var scope = NewDisposeScope();
        using var tmp = new TestData.TempDir();
        var config = Tiny() with { LayerHeads = [2, 0], LayerIntermediateSizes = [16, 0] };
        using var model = BertTaskModel.Create(config, BertTask.SequenceClassification);
        model.eval();
        var p = model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        Assert.Equal([16L, 32L], p["bert.encoder.layer.0.attention.self.query.weight"].shape);
        Assert.Equal([0L, 32L], p["bert.encoder.layer.1.attention.self.key.weight"].shape);
        Assert.Equal([32L, 0L], p["bert.encoder.layer.1.output.dense.weight"].shape);
        using var _ = no_grad();
        var inputs = RandomInputs(config);
        var logits = model.forward(inputs).Logits;
        Assert.False(logits.isnan().any().item<bool>());

        BertCheckpoint.Save(model, tmp["pruned"], tokenizer: null);
        var json = JsonNode.Parse(File.ReadAllText(tmp["pruned/config.json"]))!.AsObject();
        Assert.Equal("[2,0]", json["distillery_layer_heads"]!.ToJsonString());
        Assert.Equal("[16,0]", json["distillery_layer_intermediate_sizes"]!.ToJsonString());
        // transformers' own field, so that BertFor*.from_pretrained prunes the same heads before loading.
        Assert.Equal("{\"0\":[2,3],\"1\":[0,1,2,3]}", json["pruned_heads"]!.ToJsonString());
        var (loaded, report) = BertCheckpoint.Load(tmp["pruned"]);
        using (loaded)
        {
            loaded.eval();
            Assert.Empty(report.Initialized);
            Assert.Equal(0.0, MaxDiff(logits, loaded.forward(inputs).Logits));
        }
    }

    [Fact]
    public void TransformersPrunedHeadsConfigIsRead()
    {
        var obj = Tiny().ToJson();
        obj["pruned_heads"] = new JsonObject { ["1"] = new JsonArray(0, 3) };
        var config = BertConfig.FromJson(obj, "config.json");
        Assert.Equal(4, config.HeadsInLayer(0));
        Assert.Equal(2, config.HeadsInLayer(1));
    }

    [Fact]
    public void EncoderLayersCanBeReplacedFromOutside()
    {
        using var scope = NewDisposeScope();
        var config = Tiny();
        torch.manual_seed(3);
        using var model = BertTaskModel.Create(config, BertTask.MaskedLM);
        model.eval();
        using var _ = no_grad();
        var inputs = RandomInputs(config);
        var before = model.forward(inputs).Logits;
        var layers = model.Bert.Encoder.Layers;

        // One layer only (the second): the state dict renumbers, the forward uses just that layer.
        model.Bert.Encoder.ReplaceLayers([layers[1]]);
        var names = model.named_parameters().Select(x => x.name).ToList();
        Assert.Contains("bert.encoder.layer.0.attention.self.query.weight", names);
        Assert.DoesNotContain(names, n => n.StartsWith("bert.encoder.layer.1."));
        Assert.Same(layers[1], model.Bert.Encoder.Layers[0]);
        var embedded = model.Bert.Embeddings.forward(inputs.InputIds, inputs.TokenTypeIds);
        var mask = BertModel.AdditiveMask(inputs.AttentionMask!, ScalarType.Float32);
        var expected = layers[1].forward(embedded, mask, null, BertForwardOptions.Default).Hidden;
        Assert.Equal(0.0, MaxDiff(expected, model.Bert.forward(inputs).LastHiddenState));

        // Put the original two back: the function is the original one.
        model.Bert.Encoder.ReplaceLayers(layers);
        Assert.Equal(0.0, MaxDiff(before, model.forward(inputs).Logits));
        Assert.Equal(model.parameters().Count(), BertTaskModel.Create(config, BertTask.MaskedLM).parameters().Count());
    }

    [Fact]
    public void SaveWritesTransformersLayoutAndLoadRoundTripsEveryHead()
    {
        using var scope = NewDisposeScope();
        using var tmp = new TestData.TempDir();
        var config = Tiny();
        foreach (var task in Enum.GetValues<BertTask>())
        {
            torch.manual_seed(11);
            using var model = BertTaskModel.Create(config, task);
            model.eval();
            string dir = tmp[task.ToString()];
            BertCheckpoint.Save(model, dir, tokenizer: null);
            var keys = Safetensors.ReadHeader(Path.Combine(dir, "model.safetensors")).Entries.Select(e => e.Name).ToHashSet();
            // The tied MLM decoder is left out, as transformers' save_pretrained does; everything else is a parameter.
            Assert.DoesNotContain("cls.predictions.decoder.weight", keys);
            // A sentence-embedding model is saved as sentence-transformers saves it: a bare BertModel (no "bert." prefix).
            string Saved(string name) => task == BertTask.SentenceEmbedding ? name["bert.".Length..] : name;
            Assert.Equal(model.named_parameters().Select(x => Saved(x.name)).ToHashSet(), keys);
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
            Assert.Equal(BertTasks.ArchitectureName(task), json["architectures"]![0]!.GetValue<string>());
            Assert.Equal("bert", json["model_type"]!.GetValue<string>());
            Assert.Equal(32, json["hidden_size"]!.GetValue<int>());
            Assert.Null(json["distillery_layer_heads"]);

            var (loaded, report) = BertCheckpoint.Load(dir);
            using (loaded)
            {
                loaded.eval();
                Assert.Equal(task, loaded.Task);
                Assert.Empty(report.Initialized);
                Assert.Empty(report.Unexpected);
                using var _ = no_grad();
                var inputs = RandomInputs(config);
                Assert.Equal(0.0, MaxDiff(model.forward(inputs).Logits, loaded.forward(inputs).Logits));
            }
        }
    }

    [Fact]
    public void HalfPrecisionStorageIsRecordedAndLoadsBack()
    {
        using var scope = NewDisposeScope();
        using var tmp = new TestData.TempDir();
        using var model = BertTaskModel.Create(Tiny(), BertTask.MaskedLM);
        BertCheckpoint.Save(model, tmp["bf16"], tokenizer: null, dtype: "bfloat16");
        var (entries, _) = Safetensors.ReadHeader(tmp["bf16/model.safetensors"]);
        Assert.All(entries, e => Assert.Equal(SafetensorsDType.BF16, e.DType));
        Assert.Equal("bfloat16", BertConfig.Load(tmp["bf16/config.json"]).TorchDtype);
        var (loaded, _) = BertCheckpoint.Load(tmp["bf16"]);
        using (loaded)
        {
            var a = model.named_parameters().First(x => x.name == "bert.encoder.layer.0.attention.self.query.weight").parameter;
            var b = loaded.named_parameters().First(x => x.name == "bert.encoder.layer.0.attention.self.query.weight").parameter;
            Assert.Equal(ScalarType.Float32, b.dtype);   // computed in fp32
            Assert.True(MaxDiff(a, b) < 1e-3);            // bf16 keeps ~3 significant digits
        }
    }

    [Fact]
    public void BareBertModelCheckpointAndTaskOverrideLoadWithReport()
    {
        using var scope = NewDisposeScope();
        using var tmp = new TestData.TempDir();
        var config = Tiny();
        using var mlm = BertTaskModel.Create(config, BertTask.MaskedLM);
        BertCheckpoint.Save(mlm, tmp["mlm"], tokenizer: null);

        // Fine-tuning start: MLM checkpoint loaded as a classifier. Pooler and classifier are new; the MLM head is ignored.
        var (classifier, report) = BertCheckpoint.Load(tmp["mlm"], BertTask.SequenceClassification);
        using (classifier)
        {
            Assert.Equal(["bert.pooler.dense.bias", "bert.pooler.dense.weight", "classifier.bias", "classifier.weight"], report.Initialized.Order());
            Assert.Contains("cls.predictions.bias", report.Unexpected);
        }
        Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(tmp["mlm"], BertTask.SequenceClassification, strict: true));

        // A bare BertModel file (no "bert." prefix), as transformers' BertModel.save_pretrained writes.
        var bare = BertCheckpoint.StateDict(mlm).Where(kv => kv.Key.StartsWith("bert.")).ToDictionary(kv => kv.Key["bert.".Length..], kv => kv.Value);
        Directory.CreateDirectory(tmp["bare"]);
        Safetensors.Save(tmp["bare/model.safetensors"], bare);
        File.Copy(tmp["mlm/config.json"], tmp["bare/config.json"]);
        var (loaded, bareReport) = BertCheckpoint.Load(tmp["bare"]);
        using (loaded)
            Assert.Contains("cls.predictions.bias", bareReport.Initialized);
    }

    [Fact]
    public void BadCheckpointsFailWithOneLineNamingTheProblem()
    {
        using var scope = NewDisposeScope();
        using var tmp = new TestData.TempDir();
        var config = Tiny();
        using var model = BertTaskModel.Create(config, BertTask.MaskedLM);
        BertCheckpoint.Save(model, tmp["good"], tokenizer: null);

        string Copy(string name)
        {
            Directory.CreateDirectory(tmp[name]);
            foreach (var f in Directory.GetFiles(tmp["good"])) File.Copy(f, Path.Combine(tmp[name], Path.GetFileName(f)));
            return tmp[name];
        }
        void Rewrite(string dir, Action<JsonObject> edit)
        {
            var obj = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
            edit(obj);
            File.WriteAllText(Path.Combine(dir, "config.json"), obj.ToJsonString());
        }
        void Fails<T>(string dir, params string[] fragments) where T : Exception
        {
            var e = Assert.ThrowsAny<T>(() => BertCheckpoint.Load(dir));
            Assert.DoesNotContain('\n', e.Message);
            foreach (var f in fragments) Assert.Contains(f, e.Message);
        }

        var noHidden = Copy("no-hidden");
        Rewrite(noHidden, o => o.Remove("hidden_size"));
        Fails<InvalidDataException>(noHidden, "config.json", "missing field hidden_size");

        var indivisible = Copy("indivisible");
        Rewrite(indivisible, o => o["num_attention_heads"] = 5);
        Fails<InvalidDataException>(indivisible, "hidden_size 32 is not divisible by num_attention_heads 5");

        var wrongShape = Copy("wrong-shape");
        Rewrite(wrongShape, o => o["intermediate_size"] = 48);
        Fails<InvalidDataException>(wrongShape, "model.safetensors", "bert.encoder.layer.0.intermediate.dense.weight", "[64, 32]", "[48, 32]");

        var notJson = Copy("not-json");
        File.WriteAllText(Path.Combine(notJson, "config.json"), "{\"hidden_size\": 32,");
        Fails<InvalidDataException>(notJson, "not valid JSON");

        var missingTensor = Copy("missing-tensor");
        var tensors = Safetensors.Load(Path.Combine(missingTensor, "model.safetensors"));
        tensors.Remove("bert.encoder.layer.1.output.dense.weight");
        Safetensors.Save(Path.Combine(missingTensor, "model.safetensors"), tensors);
        Fails<InvalidDataException>(missingTensor, "missing 1 tensor", "bert.encoder.layer.1.output.dense.weight");

        var truncated = Copy("truncated");
        var bytes = File.ReadAllBytes(Path.Combine(truncated, "model.safetensors"));
        File.WriteAllBytes(Path.Combine(truncated, "model.safetensors"), bytes[..(bytes.Length / 2)]);
        Fails<SafetensorsFormatException>(truncated, "model.safetensors");

        var noWeights = Copy("no-weights");
        File.Delete(Path.Combine(noWeights, "model.safetensors"));
        Fails<FileNotFoundException>(noWeights, "model.safetensors missing");

        Fails<DirectoryNotFoundException>(tmp["does-not-exist"], "model folder not found");
    }

    [Fact]
    public void Bf16MatmulsStayCloseToFp32()
    {
        using var scope = NewDisposeScope();
        var config = Tiny();
        torch.manual_seed(5);
        using var model = BertTaskModel.Create(config, BertTask.MaskedLM);
        model.eval();
        using var _ = no_grad();
        var inputs = RandomInputs(config);
        var fp32 = model.forward(inputs).Logits;
        model.SetPrecision(ComputePrecision.BFloat16);
        var bf16 = model.forward(inputs).Logits;
        Assert.Equal(ScalarType.Float32, bf16.dtype);
        double diff = MaxDiff(fp32, bf16), scale = fp32.abs().max().item<float>();
        Assert.True(diff > 0, "bf16 path did not change the arithmetic");
        Assert.True(diff < 0.05 * scale, $"bf16 logits differ by {diff} (scale {scale})");
    }

    [Fact]
    public void InputLongerThanThePositionTableIsAClearError()
    {
        using var scope = NewDisposeScope();
        var config = Tiny();
        using var model = BertTaskModel.Create(config, BertTask.MaskedLM);
        var e = Assert.Throws<ArgumentException>(() => model.forward(new BertInputs(ones(1, 41, dtype: ScalarType.Int64))));
        Assert.Contains("41 tokens", e.Message);
        Assert.Contains("40 positions", e.Message);
    }
}
