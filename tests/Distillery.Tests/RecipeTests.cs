using System.Text.Json.Nodes;
using Distillery.Recipes;

namespace Distillery.Tests;

/// <summary>Recipes: stages chained by their outputs, and every bad recipe stopped before anything runs.</summary>
public sealed class RecipeTests
{
    internal static void WriteTinyGlue(string dir)
    {
        Directory.CreateDirectory(Path.Combine(dir, "SST-2"));
        var random = new Random(2);
        string Row(bool positive) => string.Join(' ', Enumerable.Range(0, 5).Select(_ => positive ? (random.Next(2) == 0 ? "good" : "very") : (random.Next(2) == 0 ? "bad" : "not"))) + "\t" + (positive ? 1 : 0);
        File.WriteAllLines(Path.Combine(dir, "SST-2", "train.tsv"), ["sentence\tlabel", .. Enumerable.Range(0, 48).Select(i => Row(i % 2 == 0))]);
        File.WriteAllLines(Path.Combine(dir, "SST-2", "dev.tsv"), ["sentence\tlabel", .. Enumerable.Range(0, 16).Select(i => Row(i % 2 == 0))]);
    }

    static JsonObject Trainer(int epochs = 2) => new() { ["batch_size"] = 8, ["learning_rate"] = 3e-3, ["epochs"] = epochs, ["log_every"] = 4, ["checkpoint_every"] = 0 };

    /// <summary>init (teacher shape) → finetune (the teacher) → distill into a one-layer student taken from it.</summary>
    static JsonObject TinyRecipe(TestData.TempDir tmp)
    {
        File.WriteAllLines(tmp["vocab.txt"], Quickstart.GeneratedVocabulary());
        WriteTinyGlue(tmp["glue"]);
        return new JsonObject
        {
            ["name"] = "tiny-kd",
            ["stages"] = new JsonArray(
                new JsonObject { ["stage"] = "init", ["layers"] = 2, ["hidden"] = 32, ["heads"] = 2, ["max_positions"] = 64, ["vocab_path"] = tmp["vocab.txt"], ["out"] = tmp["init"] },
                new JsonObject { ["stage"] = "finetune", ["task"] = "sst2", ["data"] = tmp["glue"], ["out"] = tmp["teacher"], ["trainer"] = Trainer() },
                new JsonObject
                {
                    ["stage"] = "distill", ["method"] = "kd", ["teacher"] = tmp["teacher"], ["task"] = "sst2", ["data"] = tmp["glue"], ["out"] = tmp["student"],
                    ["student"] = new JsonObject { ["kind"] = "teacher_layers", ["teacher_layers"] = new JsonArray(0) }, ["trainer"] = Trainer(),
                }),
        };
    }

    static string Write(TestData.TempDir tmp, JsonObject recipe, string name = "recipe.json")
    {
        File.WriteAllText(tmp[name], recipe.ToJsonString());
        return tmp[name];
    }

    [Fact]
    public void StagesRunInOrderEachTakingThePreviousOutput()
    {
        using var tmp = new TestData.TempDir();
        var recipe = Recipe.Load(Write(tmp, TinyRecipe(tmp)));
        Assert.Equal(3, recipe.Stages.Count);
        var results = recipe.Run();
        Assert.Null(results[0]);
        Assert.Equal("finetune", results[1]!["command"]!.GetValue<string>());
        Assert.Equal("distill", results[2]!["command"]!.GetValue<string>());
        foreach (var dir in new[] { "init", "teacher", "student" }) Assert.True(File.Exists(Path.Combine(tmp[dir], "config.json")), dir);
        Assert.Equal(1, Models.BertConfig.Load(Path.Combine(tmp["student"], "config.json")).NumHiddenLayers);
        // A second run skips the complete stages and reports their metrics.
        var weights = new FileInfo(Path.Combine(tmp["student"], "model.safetensors")).LastWriteTimeUtc;
        var again = recipe.Run();
        Assert.Equal(results[2]!["dev"]!.ToJsonString(), again[2]!["dev"]!.ToJsonString());
        Assert.Equal(weights, new FileInfo(Path.Combine(tmp["student"], "model.safetensors")).LastWriteTimeUtc);
        // The finetune stage had no "model": it took the init stage's output.
        var finetuneConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(tmp["teacher"], "run_config.json")))!;
        Assert.Equal(tmp["init"], finetuneConfig["options"]!["model"]!.GetValue<string>());
    }

    [Fact]
    public void BadRecipesStopBeforeAnythingRunsWithOneLine()
    {
        using var tmp = new TestData.TempDir();
        void Fails(Action<JsonObject> edit, params string[] fragments)
        {
            var recipe = TinyRecipe(tmp);
            edit(recipe);
            var e = Assert.ThrowsAny<Exception>(() => Recipe.Load(Write(tmp, recipe)));
            Assert.True(e is InvalidDataException or FileNotFoundException, e.GetType().Name + ": " + e.Message);
            Assert.DoesNotContain('\n', e.Message);
            foreach (var f in fragments) Assert.Contains(f, e.Message);
            Assert.False(Directory.Exists(tmp["init"]), "a stage ran");
        }
        JsonObject Stage(JsonObject r, int i) => r["stages"]![i]!.AsObject();

        Fails(r => Stage(r, 2)["method"] = "distilbrt", "stages[2] (distill)", "unknown method \"distilbrt\"", "known: kd, distilbert");
        Fails(r => Stage(r, 1)["stage"] = "fine-tune", "stages[1]", "unknown stage \"fine-tune\"");
        Fails(r => Stage(r, 2)["student"] = new JsonObject { ["kind"] = "teacher_layers", ["teacher_layers"] = new JsonArray(0, 5) },
            "stages[2] (distill)", "teacher layer 5", "layers 0..1");
        Fails(r => Stage(r, 1)["task"] = "sst3", "stages[1] (finetune)", "unknown GLUE task 'sst3'");
        Fails(r => Stage(r, 0).Remove("out"), "stages[0] (init)", "out");
    }

    [Fact]
    public void AnExtractStageTakesChosenLayersOfThePreviousOutputAndBadLayersStopTheRecipeUpFront()
    {
        using var tmp = new TestData.TempDir();
        File.WriteAllLines(tmp["vocab.txt"], Quickstart.GeneratedVocabulary());
        JsonObject Recipe(params int[] layers) => new()
        {
            ["name"] = "extract",
            ["stages"] = new JsonArray(
                new JsonObject { ["stage"] = "init", ["layers"] = 4, ["hidden"] = 32, ["heads"] = 2, ["max_positions"] = 64, ["vocab_path"] = tmp["vocab.txt"], ["out"] = tmp["init"] },
                new JsonObject { ["stage"] = "extract", ["layers"] = new JsonArray(layers.Select(i => (JsonNode)i).ToArray()), ["out"] = tmp["l2"] }),
        };
        // Layer 4 of a 4-layer model that does not exist yet: caught from the init stage's config, before it runs.
        var bad = Assert.Throws<InvalidDataException>(() => Recipes.Recipe.Load(Write(tmp, Recipe(0, 4))));
        Assert.Contains("stages[1] (extract)", bad.Message);
        Assert.Contains("layer 4 does not exist", bad.Message);
        Assert.False(Directory.Exists(tmp["init"]), "a stage ran");
        Assert.Contains("repeat", Assert.Throws<InvalidDataException>(() => Recipes.Recipe.Load(Write(tmp, Recipe(1, 1)))).Message);

        var recipe = Recipes.Recipe.Load(Write(tmp, Recipe(3, 0)));
        var results = recipe.Run();
        Assert.Null(results[1]);
        Assert.Equal(2, Models.BertConfig.Load(Path.Combine(tmp["l2"], "config.json")).NumHiddenLayers);
        var written = new FileInfo(tmp["l2/model.safetensors"]).LastWriteTimeUtc;
        recipe.Run();   // complete stages are skipped
        Assert.Equal(written, new FileInfo(tmp["l2/model.safetensors"]).LastWriteTimeUtc);
        var record = JsonNode.Parse(File.ReadAllText(tmp["l2/extract.json"]))!;
        Assert.Equal(Path.GetFullPath(tmp["init"]), record["source"]!.GetValue<string>());
    }

    [Fact]
    public void StudentVocabularyAndWidthMismatchesAreCaughtUpFront()
    {
        using var tmp = new TestData.TempDir();
        var recipe = TinyRecipe(tmp);
        // A student checkpoint with another vocabulary.
        File.WriteAllLines(tmp["other-vocab.txt"], Quickstart.GeneratedVocabulary().Take(60));
        Models.ModelInit.Run(new Models.InitOptions { Layers = 1, Hidden = 32, Heads = 2, MaxPositions = 64, VocabPath = tmp["other-vocab.txt"], Out = tmp["other"], Task = Models.BertTask.SequenceClassification });
        recipe["stages"]![2]!["student"] = new JsonObject { ["kind"] = "checkpoint", ["checkpoint"] = tmp["other"] };
        var e = Assert.Throws<InvalidDataException>(() => Recipe.Load(Write(tmp, recipe)));
        Assert.Contains("vocabularies differ (93 vs 60 tokens)", e.Message);

        // DistilBERT's cosine loss with a student of another width.
        var distilbert = new JsonObject
        {
            ["name"] = "db",
            ["stages"] = new JsonArray(
                new JsonObject { ["stage"] = "init", ["layers"] = 2, ["hidden"] = 32, ["heads"] = 2, ["vocab_path"] = tmp["vocab.txt"], ["out"] = tmp["mlm"] },
                new JsonObject
                {
                    ["stage"] = "distill", ["method"] = "distilbert", ["teacher"] = tmp["mlm"], ["corpus"] = new JsonArray(tmp["vocab.txt"]), ["out"] = tmp["db"],
                    ["student"] = new JsonObject { ["kind"] = "random", ["arch"] = "L1-H16-A2" },
                }),
        };
        var width = Assert.Throws<InvalidDataException>(() => Recipe.Load(Write(tmp, distilbert, "db.json")));
        Assert.Contains("student width 16 differs from the teacher's 32", width.Message);
    }

    [Fact]
    public void HomoDistilAndPruneStagesRunToTheirTargets()
    {
        using var tmp = new TestData.TempDir();
        var recipe = TinyRecipe(tmp);
        var stages = recipe["stages"]!.AsArray();
        // Task-specific HomoDistil from the fine-tuned teacher (L2-H32-A2-F128) to L2-H24-F96 (2 heads of 16),
        // then iterative pruning of the teacher to L2-H16-A1-F64 by PLATON scores.
        stages[2] = new JsonObject
        {
            ["stage"] = "distill", ["method"] = "homodistil", ["teacher"] = tmp["teacher"], ["task"] = "sst2", ["data"] = tmp["glue"], ["out"] = tmp["homo"],
            ["homodistil"] = new JsonObject { ["target"] = "L2-H24-F96", ["prune_every"] = 2 }, ["trainer"] = Trainer(),
        };
        stages.Add(new JsonObject
        {
            ["stage"] = "prune", ["model"] = tmp["teacher"], ["task"] = "sst2", ["data"] = tmp["glue"], ["out"] = tmp["pruned"],
            ["target"] = "L2-H16-A1-F64", ["score"] = "platon", ["iterative"] = true, ["prune_every"] = 2, ["trainer"] = Trainer(),
        });
        var results = Recipe.Load(Write(tmp, recipe)).Run();
        Assert.Equal("distill", results[2]!["command"]!.GetValue<string>());
        Assert.Equal("prune", results[3]!["command"]!.GetValue<string>());
        var homo = Models.BertConfig.Load(Path.Combine(tmp["homo"], "config.json"));
        Assert.Equal((24, 16, 96), (homo.HiddenSize, homo.HeadSize, homo.IntermediateSizeOf(1)));
        Assert.Equal([2, 2], Enumerable.Range(0, 2).Select(homo.HeadsInLayer));
        var pruned = Models.BertConfig.Load(Path.Combine(tmp["pruned"], "config.json"));
        Assert.Equal((16, 16, 64, 1), (pruned.HiddenSize, pruned.HeadSize, pruned.IntermediateSizeOf(0), pruned.HeadsInLayer(1)));
        var (model, report) = Models.BertCheckpoint.Load(tmp["homo"]);
        using (model) Assert.Empty(report.Initialized);
    }

    [Fact]
    public void HomoDistilOnACorpusWritesThePrunedMaskedLmStudent()
    {
        using var tmp = new TestData.TempDir();
        File.WriteAllLines(tmp["vocab.txt"], Quickstart.GeneratedVocabulary());
        var random = new Random(4);
        string[] words = ["good", "bad", "very", "not"];
        Directory.CreateDirectory(tmp["corpus"]);
        File.WriteAllLines(tmp["corpus/a.txt"], Enumerable.Range(0, 60).Select(_ => string.Join(' ', Enumerable.Range(0, 12).Select(_ => words[random.Next(4)]))));
        var recipe = new JsonObject
        {
            ["name"] = "homo-corpus",
            ["stages"] = new JsonArray(
                new JsonObject { ["stage"] = "init", ["layers"] = 2, ["hidden"] = 32, ["heads"] = 2, ["max_positions"] = 64, ["vocab_path"] = tmp["vocab.txt"], ["out"] = tmp["mlm"] },
                new JsonObject
                {
                    ["stage"] = "distill", ["method"] = "homodistil", ["teacher"] = tmp["mlm"], ["corpus"] = new JsonArray(tmp["corpus"]), ["out"] = tmp["homo"],
                    ["seq_length"] = 16, ["eval_sequences"] = 4, ["cache_dir"] = tmp["cache"],
                    ["homodistil"] = new JsonObject { ["target"] = "L2-H16-F64", ["score"] = "magnitude", ["prune_every"] = 1 }, ["trainer"] = Trainer(1),
                }),
        };
        var results = Recipe.Load(Write(tmp, recipe)).Run();
        Assert.Equal("distill", results[1]!["command"]!.GetValue<string>());
        var (student, report) = Models.BertCheckpoint.Load(tmp["homo"]);
        using (student)
        {
            Assert.Empty(report.Initialized);
            Assert.Equal(Models.BertTask.MaskedLM, student.Task);
            Assert.Equal((16, 64, 1), (student.Config.HiddenSize, student.Config.IntermediateSizeOf(0), student.Config.HeadsInLayer(0)));
        }

        // Bad HomoDistil stages stop before anything runs.
        var bad = recipe.DeepClone().AsObject();
        bad["stages"]![1]!["homodistil"]!["target"] = "L3-H16";
        Assert.Contains("more than the teacher's 2", Assert.Throws<InvalidDataException>(() => Recipe.Load(Write(tmp, bad, "bad.json"))).Message);
        bad["stages"]![1]!["homodistil"]!["target"] = "L2-H16";
        bad["stages"]![1]!["homodistil"]!["score"] = "entropy";
        Assert.Contains("score", Assert.Throws<InvalidDataException>(() => Recipe.Load(Write(tmp, bad, "bad.json"))).Message);
    }
}
