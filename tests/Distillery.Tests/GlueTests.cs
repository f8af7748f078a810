using System.Text;
using Distillery.Data;
using Distillery.Evaluation;

namespace Distillery.Tests;

public class GlueMetricsTests
{
    // A 2x2 confusion matrix with the positive class 1:
    //              gold 1   gold 0
    //   pred 1     TP = 3   FP = 2
    //   pred 0     FN = 1   TN = 4        n = 10
    static readonly int[] Gold2 = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
    static readonly int[] Pred2 = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0];

    [Fact]
    public void Accuracy_CountsMatches()
    {
        // correct: TP + TN = 3 + 4 = 7 of 10
        Assert.Equal(0.7, Metrics.Accuracy(Pred2, Gold2), 12);
        Assert.Equal(1.0, Metrics.Accuracy([2, 0, 1], [2, 0, 1]));
    }

    [Fact]
    public void F1_OfThePositiveClass()
    {
        // F1 = 2TP / (2TP + FP + FN) = 6 / (6 + 2 + 1) = 2/3
        Assert.Equal(2.0 / 3.0, Metrics.F1(Pred2, Gold2), 12);
        // positive = 0: TP' = TN = 4, FP' = FN = 1, FN' = FP = 2 -> 8 / (8 + 1 + 2) = 8/11
        Assert.Equal(8.0 / 11.0, Metrics.F1(Pred2, Gold2, positive: 0), 12);
        // no true positive -> 0 (scikit-learn's value), with or without any positive at all
        Assert.Equal(0.0, Metrics.F1([0, 0, 1], [1, 1, 0]));
        Assert.Equal(0.0, Metrics.F1([0, 0], [0, 0]));
    }

    [Fact]
    public void Mcc_TwoByTwo()
    {
        // (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (12 - 2) / sqrt(5*4*6*5) = 10 / sqrt(600) = 0.408248290463863
        Assert.Equal(0.408248290463863, Metrics.MatthewsCorrelation(Pred2, Gold2), 12);
        Assert.Equal(1.0, Metrics.MatthewsCorrelation([0, 1, 1, 0], [0, 1, 1, 0]), 12);
        Assert.Equal(-1.0, Metrics.MatthewsCorrelation([1, 0, 0, 1], [0, 1, 1, 0]), 12);
    }

    [Fact]
    public void Mcc_MultiClass()
    {
        // gold [0,0,1,1,2,2], pred [0,1,1,1,2,0]: c = 4 correct, s = 6, true counts t = (2,2,2), predicted p = (2,3,1)
        // cov(y,p) = c*s - sum p_k t_k = 24 - (4 + 6 + 2) = 12; cov(p,p) = 36 - (4+9+1) = 22; cov(y,y) = 36 - 12 = 24
        // MCC = 12 / sqrt(22 * 24) = 12 / sqrt(528) = 0.5222329678670935
        Assert.Equal(0.5222329678670935, Metrics.MatthewsCorrelation([0, 1, 1, 1, 2, 0], [0, 0, 1, 1, 2, 2]), 12);
    }

    [Fact]
    public void Mcc_UndefinedIsZero()
    {
        // a constant prediction (or a constant gold) makes the denominator 0: scikit-learn returns 0
        Assert.Equal(0.0, Metrics.MatthewsCorrelation([1, 1, 1, 1], [0, 1, 0, 1]));
        Assert.Equal(0.0, Metrics.MatthewsCorrelation([0, 1, 0, 1], [1, 1, 1, 1]));
        Assert.Equal(0.0, Metrics.MatthewsCorrelation([1, 1], [1, 1]));
    }

    [Fact]
    public void Pearson_SmallSet()
    {
        // x = 1..5 (mean 3), y = [2,4,5,4,5] (mean 4): dx = -2,-1,0,1,2; dy = -2,0,1,0,1
        // sxy = 4+0+0+0+2 = 6, sxx = 10, syy = 4+0+1+0+1 = 6 -> r = 6 / sqrt(60) = 0.7745966692414834
        Assert.Equal(0.7745966692414834, Metrics.Pearson([1, 2, 3, 4, 5], [2, 4, 5, 4, 5]), 12);
        Assert.Equal(1.0, Metrics.Pearson([1, 2, 3], [10, 20, 30]), 12);
        Assert.Equal(-1.0, Metrics.Pearson([1, 2, 3], [3, 2, 1]), 12);
        Assert.True(double.IsNaN(Metrics.Pearson([1, 1, 1], [1, 2, 3]))); // constant input: undefined, as SciPy
    }

    [Fact]
    public void Spearman_TiesGetTheMeanRank()
    {
        // y = [1,3,2,2,5]: the two 2s share ranks 2 and 3 -> 2.5 each; ranks y = [1,4,2.5,2.5,5], ranks x = [1..5]
        // dx = -2,-1,0,1,2; dy = -2,1,-0.5,-0.5,2: sxy = 4-1+0-0.5+4 = 6.5, sxx = 10, syy = 4+1+0.25+0.25+4 = 9.5
        // rho = 6.5 / sqrt(95) = 0.6668859288553503
        Assert.Equal(0.6668859288553503, Metrics.Spearman([1, 2, 3, 4, 5], [1, 3, 2, 2, 5]), 12);
        // monotone but not linear -> 1
        Assert.Equal(1.0, Metrics.Spearman([1, 2, 3, 4], [1, 10, 100, 1000]), 12);
    }

    [Fact]
    public void LengthMismatchOrEmpty_Throws()
    {
        Assert.Throws<ArgumentException>(() => Metrics.Accuracy([1, 0], [1]));
        Assert.Throws<ArgumentException>(() => Metrics.Accuracy([], []));
        Assert.Throws<ArgumentException>(() => Metrics.F1([1], [1, 0]));
        Assert.Throws<ArgumentException>(() => Metrics.F1([], []));
        Assert.Throws<ArgumentException>(() => Metrics.MatthewsCorrelation([1, 0, 1], [1, 0]));
        Assert.Throws<ArgumentException>(() => Metrics.MatthewsCorrelation([], []));
        Assert.Throws<ArgumentException>(() => Metrics.Pearson([1, 2], [1, 2, 3]));
        Assert.Throws<ArgumentException>(() => Metrics.Pearson([], []));
        Assert.Throws<ArgumentException>(() => Metrics.Spearman([1, 2, 3], [1, 2]));
        Assert.Throws<ArgumentException>(() => Metrics.Spearman([], []));
    }
}

public class GlueDataTests
{
    static string GlueFile(string task, string split) => TestData.Path("glue", task, split + ".tsv");

    static IReadOnlyList<GlueExample> LoadReal(GlueTask task, string split) =>
        Glue.Load(task, GlueFile(Glue.Info(task).DirectoryName, split));

    static int Count(IReadOnlyList<GlueExample> examples, int label) => examples.Count(e => e.Label == label);

    [Theory]
    [InlineData(GlueTask.Sst2, "train", 67_349)]
    [InlineData(GlueTask.Sst2, "dev", 872)]
    [InlineData(GlueTask.Sst2, "test", 1_821)]
    [InlineData(GlueTask.Mrpc, "train", 3_668)]
    [InlineData(GlueTask.Mrpc, "dev", 408)]
    [InlineData(GlueTask.Mrpc, "test", 1_725)]
    [InlineData(GlueTask.Rte, "train", 2_490)]
    [InlineData(GlueTask.Rte, "dev", 277)]
    [InlineData(GlueTask.Rte, "test", 3_000)]
    [InlineData(GlueTask.CoLA, "train", 8_551)]
    [InlineData(GlueTask.CoLA, "dev", 1_043)]
    [InlineData(GlueTask.CoLA, "test", 1_063)]
    [InlineData(GlueTask.StsB, "train", 5_749)]
    [InlineData(GlueTask.StsB, "dev", 1_500)]
    [InlineData(GlueTask.StsB, "test", 1_379)]
    [InlineData(GlueTask.Qnli, "dev", 5_463)]
    [InlineData(GlueTask.Qnli, "test", 5_463)]
    [InlineData(GlueTask.Wnli, "train", 635)]
    [InlineData(GlueTask.Wnli, "dev", 71)]
    [InlineData(GlueTask.Wnli, "test", 146)]
    public void RealFiles_RowCounts(GlueTask task, string split, int rows)
    {
        var examples = LoadReal(task, split);
        Assert.Equal(rows, examples.Count);
        var info = Glue.Info(task);
        bool pair = task is not (GlueTask.CoLA or GlueTask.Sst2);
        Assert.All(examples, e => Assert.Equal(pair, e.TextB is not null));
        if (split == "test")
        {
            Assert.All(examples, e => Assert.Equal(-1, e.Label));
            Assert.All(examples, e => Assert.True(double.IsNaN(e.Score)));
        }
        else if (info.IsRegression)
        {
            Assert.All(examples, e => Assert.InRange(e.Score, 0.0, 5.0));
            Assert.All(examples, e => Assert.Equal(-1, e.Label));
        }
        else
        {
            Assert.All(examples, e => Assert.InRange(e.Label, 0, info.Labels.Count - 1));
        }
        // lines are increasing and 1-based; files with a header start at line 2
        Assert.Equal(task == GlueTask.CoLA && split != "test" ? 1 : 2, examples[0].Line);
        for (int i = 1; i < examples.Count; i++) Assert.Equal(examples[i - 1].Line + 1, examples[i].Line);
    }

    [Fact]
    public void RealFiles_LabelBalances()
    {
        var sst2 = LoadReal(GlueTask.Sst2, "dev");
        Assert.Equal((444, 428), (Count(sst2, 1), Count(sst2, 0)));
        var mrpcDev = LoadReal(GlueTask.Mrpc, "dev");
        Assert.Equal((279, 129), (Count(mrpcDev, 1), Count(mrpcDev, 0)));
        var mrpcTrain = LoadReal(GlueTask.Mrpc, "train");
        Assert.Equal((2_474, 1_194), (Count(mrpcTrain, 1), Count(mrpcTrain, 0)));
        var rte = LoadReal(GlueTask.Rte, "dev"); // labels: 0 entailment, 1 not_entailment
        Assert.Equal((146, 131), (Count(rte, 0), Count(rte, 1)));
        var cola = LoadReal(GlueTask.CoLA, "dev");
        Assert.Equal((721, 322), (Count(cola, 1), Count(cola, 0)));
        var qnli = LoadReal(GlueTask.Qnli, "dev");
        Assert.Equal((2_702, 2_761), (Count(qnli, 0), Count(qnli, 1)));
    }

    [Fact]
    public void RealFiles_FirstExamples()
    {
        var sst2 = LoadReal(GlueTask.Sst2, "dev")[0];
        Assert.Equal(new GlueExample("it 's a charming and often affecting journey . ", null, 1, double.NaN, 2), sst2);

        // MRPC dev starts with a UTF-8 BOM before its header
        var mrpc = LoadReal(GlueTask.Mrpc, "dev")[0];
        Assert.Equal("He said the foodservice pie business doesn 't fit the company 's long-term growth strategy .", mrpc.TextA);
        Assert.Equal("\" The foodservice pie business does not fit our long-term growth strategy .", mrpc.TextB);
        Assert.Equal(1, mrpc.Label);

        // CoLA dev: no header, no final newline
        var cola = LoadReal(GlueTask.CoLA, "dev");
        Assert.Equal(new GlueExample("The sailors rode the breeze clear of the rocks.", null, 1, double.NaN, 1), cola[0]);
        Assert.Equal(new GlueExample("John talked to Bill about himself.", null, 1, double.NaN, 1_043), cola[^1]);
        Assert.Equal("Bill whistled past the house.", LoadReal(GlueTask.CoLA, "test")[0].TextA);

        var sts = LoadReal(GlueTask.StsB, "dev")[0];
        Assert.Equal(new GlueExample("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", -1, 5.0, 2), sts);

        var rte = LoadReal(GlueTask.Rte, "dev")[0];
        Assert.Equal("Christopher Reeve had an accident.", rte.TextB);
        Assert.Equal(1, rte.Label); // not_entailment

        var qnli = LoadReal(GlueTask.Qnli, "dev")[0];
        Assert.Equal("What came into force after the new constitution was herald?", qnli.TextA);
        Assert.Equal(0, qnli.Label); // entailment

        var wnliTest = LoadReal(GlueTask.Wnli, "test")[0];
        Assert.StartsWith("Maude and Dora had seen the trains", wnliTest.TextA);
        Assert.Equal(-1, wnliTest.Label);
    }

    [Fact]
    public void RealFiles_EvaluateWithOfficialMetrics()
    {
        var mrpc = LoadReal(GlueTask.Mrpc, "dev");
        var allOnes = Enumerable.Repeat(1, mrpc.Count).ToArray();
        var m = Glue.Evaluate(GlueTask.Mrpc, allOnes, mrpc);
        Assert.Equal(new[] { "f1", "accuracy" }, m.Keys);
        // always "paraphrase": TP = 279, FP = 129, FN = 0 -> F1 = 558 / 687; accuracy = 279 / 408
        Assert.Equal(558.0 / 687.0, m["f1"], 12);
        Assert.Equal(279.0 / 408.0, m["accuracy"], 12);

        var cola = LoadReal(GlueTask.CoLA, "dev");
        Assert.Equal(0.0, Glue.Evaluate(GlueTask.CoLA, Enumerable.Repeat(1, cola.Count).ToArray(), cola)["mcc"]);
        Assert.Equal(1.0, Glue.Evaluate(GlueTask.CoLA, cola.Select(e => e.Label).ToArray(), cola)["mcc"], 12);

        var rte = LoadReal(GlueTask.Rte, "dev");
        Assert.Equal(146.0 / 277.0, Glue.Evaluate(GlueTask.Rte, new int[rte.Count], rte)["accuracy"], 12);

        var sts = LoadReal(GlueTask.StsB, "dev");
        var r = Glue.EvaluateRegression(sts.Select(e => e.Score).ToArray(), sts);
        Assert.Equal(new[] { "pearson", "spearman" }, r.Keys);
        Assert.Equal(1.0, r["pearson"], 12);
        Assert.Equal(1.0, r["spearman"], 12);
        var squashed = Glue.EvaluateRegression(sts.Select(e => Math.Pow(e.Score, 3)).ToArray(), sts);
        Assert.True(squashed["pearson"] < 1.0);
        Assert.Equal(1.0, squashed["spearman"], 12); // monotone transform keeps the ranks
    }

    [Fact]
    public void Evaluate_RejectsBadInputs()
    {
        GlueExample[] gold = [new("a", null, 1, double.NaN, 2), new("b", null, 0, double.NaN, 3)];
        Assert.Throws<ArgumentException>(() => Glue.Evaluate(GlueTask.Sst2, [1], gold));
        Assert.Throws<ArgumentException>(() => Glue.Evaluate(GlueTask.Sst2, [], []));
        Assert.Throws<ArgumentException>(() => Glue.Evaluate(GlueTask.Sst2, [1, 2], gold)); // 2 is not an SST-2 class
        Assert.Throws<ArgumentException>(() => Glue.Evaluate(GlueTask.StsB, [1, 0], gold)); // regression task
        GlueExample[] unlabeled = [new("a", null, -1, double.NaN, 2), new("b", null, -1, double.NaN, 3)];
        Assert.Throws<ArgumentException>(() => Glue.Evaluate(GlueTask.Sst2, [1, 0], unlabeled));
        Assert.Throws<ArgumentException>(() => Glue.EvaluateRegression([1.0, 2.0], unlabeled));
        Assert.Throws<ArgumentException>(() => Glue.EvaluateRegression([1.0], gold));
    }

    [Fact]
    public void TaskInfo()
    {
        Assert.Equal(9, Glue.All.Count());
        Assert.Equal(Enum.GetValues<GlueTask>(), Glue.All);
        foreach (var task in Glue.All)
        {
            var info = Glue.Info(task);
            Assert.Equal(task, info.Task);
            Assert.Equal(info.MetricNames[0], info.PrimaryMetric);
            Assert.Equal(task, Glue.ParseTask(info.DirectoryName));
        }
        var mnli = Glue.Info(GlueTask.Mnli);
        Assert.Equal(new[] { "contradiction", "entailment", "neutral" }, mnli.Labels);
        Assert.Equal(new[] { "dev_matched", "dev_mismatched" }, mnli.DevSplits);
        Assert.Equal("accuracy", mnli.PrimaryMetric);
        Assert.Equal(new[] { "entailment", "not_entailment" }, Glue.Info(GlueTask.Rte).Labels);
        Assert.Equal(new[] { "entailment", "not_entailment" }, Glue.Info(GlueTask.Qnli).Labels);
        Assert.Equal(new[] { "0", "1" }, Glue.Info(GlueTask.Wnli).Labels);
        Assert.Equal("SST-2", Glue.Info(GlueTask.Sst2).DirectoryName);
        Assert.Equal("mcc", Glue.Info(GlueTask.CoLA).PrimaryMetric);
        Assert.Equal("f1", Glue.Info(GlueTask.Mrpc).PrimaryMetric);
        Assert.Equal("f1", Glue.Info(GlueTask.Qqp).PrimaryMetric);
        Assert.Equal(new[] { "f1", "accuracy" }, Glue.Info(GlueTask.Qqp).MetricNames);
        var sts = Glue.Info(GlueTask.StsB);
        Assert.True(sts.IsRegression);
        Assert.Equal("pearson", sts.PrimaryMetric);
        Assert.Equal(new[] { "pearson", "spearman" }, sts.MetricNames);
        Assert.Equal(new[] { "dev" }, Glue.Info(GlueTask.Rte).DevSplits);
    }

    [Theory]
    [InlineData("sst2", GlueTask.Sst2)]
    [InlineData("sst-2", GlueTask.Sst2)]
    [InlineData("SST-2", GlueTask.Sst2)]
    [InlineData("stsb", GlueTask.StsB)]
    [InlineData("sts-b", GlueTask.StsB)]
    [InlineData("STS-B", GlueTask.StsB)]
    [InlineData("cola", GlueTask.CoLA)]
    [InlineData("CoLA", GlueTask.CoLA)]
    [InlineData("mnli", GlueTask.Mnli)]
    [InlineData("MRPC", GlueTask.Mrpc)]
    [InlineData("qqp", GlueTask.Qqp)]
    [InlineData("qnli", GlueTask.Qnli)]
    [InlineData("Rte", GlueTask.Rte)]
    [InlineData("wnli", GlueTask.Wnli)]
    public void ParseTask_Variants(string name, GlueTask task) => Assert.Equal(task, Glue.ParseTask(name));

    [Fact]
    public void ParseTask_Unknown()
    {
        var e = Assert.Throws<ArgumentException>(() => Glue.ParseTask("squad"));
        Assert.Equal("unknown GLUE task 'squad' (known: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli)", e.Message);
        Assert.Throws<ArgumentException>(() => Glue.ParseTask(""));
    }

    [Fact]
    public void SplitPath_FromRootOrTaskFolder()
    {
        string root = TestData.Path("glue");
        string dev = Path.Combine(root, "SST-2", "dev.tsv");
        Assert.Equal(dev, Glue.SplitPath(root, GlueTask.Sst2, "dev"));
        Assert.Equal(dev, Glue.SplitPath(Path.Combine(root, "SST-2"), GlueTask.Sst2, "dev"));
        Assert.Equal(Path.Combine(root, "STS-B", "train.tsv"), Glue.SplitPath(root, GlueTask.StsB, "train"));

        var missing = Assert.Throws<FileNotFoundException>(() => Glue.SplitPath(root, GlueTask.Qnli, "train"));
        Assert.Contains(Path.Combine(root, "QNLI", "train.tsv"), missing.Message);
        Assert.Equal(Path.Combine(root, "QNLI", "train.tsv"), missing.FileName);
        Assert.Throws<FileNotFoundException>(() => Glue.SplitPath(root, GlueTask.Mnli, "dev_matched"));
    }

    [Fact]
    public void SplitPath_MnliDevMeansMatched()
    {
        using var tmp = new TestData.TempDir();
        Directory.CreateDirectory(tmp["MNLI"]);
        File.WriteAllText(Path.Combine(tmp["MNLI"], "dev_matched.tsv"), "x");
        File.WriteAllText(Path.Combine(tmp["MNLI"], "dev_mismatched.tsv"), "x");
        Assert.Equal(Path.Combine(tmp["MNLI"], "dev_matched.tsv"), Glue.SplitPath(tmp.Dir, GlueTask.Mnli, "dev"));
        Assert.Equal(Path.Combine(tmp["MNLI"], "dev_mismatched.tsv"), Glue.SplitPath(tmp.Dir, GlueTask.Mnli, "dev_mismatched"));
        Assert.Equal(Path.Combine(tmp["MNLI"], "dev_mismatched.tsv"), Glue.SplitPath(tmp["MNLI"], GlueTask.Mnli, "dev_mismatched"));
    }

    // ---- small files: what is accepted ----

    [Fact]
    public void Load_AcceptsCrlfBomTrailingBlankLinesAndNoFinalNewline()
    {
        using var tmp = new TestData.TempDir();
        byte[] withBom = [0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes("sentence\tlabel\r\ngood \"quoted\" film\t1\r\nbad\t0\r\n\r\n\n")];
        File.WriteAllBytes(tmp["a.tsv"], withBom);
        var a = Glue.Load(GlueTask.Sst2, tmp["a.tsv"]);
        Assert.Equal(2, a.Count);
        Assert.Equal(new GlueExample("good \"quoted\" film", null, 1, double.NaN, 2), a[0]); // no quote handling
        Assert.Equal(new GlueExample("bad", null, 0, double.NaN, 3), a[1]);

        File.WriteAllText(tmp["b.tsv"], "index\tsentence1\tsentence2\tgold_label\n0\tA café.\tB\tneutral");
        var b = Glue.Load(GlueTask.Mnli, tmp["b.tsv"]);
        Assert.Equal(new GlueExample("A café.", "B", 2, double.NaN, 2), Assert.Single(b));
    }

    [Fact]
    public void Load_MnliUsesTheGoldLabelColumn()
    {
        using var tmp = new TestData.TempDir();
        string header = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label";
        string row = "0\t1\t1e\tfiction\t(a)\t(b)\t(A)\t(B)\tThe cat sat.\tA cat sat.\tneutral\tentailment\tentailment\tentailment\tcontradiction\tentailment";
        File.WriteAllText(tmp["dev_matched.tsv"], header + "\n" + row + "\n");
        var e = Assert.Single(Glue.Load(GlueTask.Mnli, tmp["dev_matched.tsv"]));
        Assert.Equal(new GlueExample("The cat sat.", "A cat sat.", 1, double.NaN, 2), e);
    }

    // ---- small files: what is rejected ----

    static void AssertBad(GlueTask task, string content, int line, string what)
    {
        using var tmp = new TestData.TempDir();
        File.WriteAllText(tmp["x.tsv"], content);
        AssertBadFile(task, tmp["x.tsv"], line, what);
    }

    static void AssertBadFile(GlueTask task, string path, int line, string what)
    {
        var e = Assert.Throws<InvalidDataException>(() => Glue.Load(task, path));
        Assert.StartsWith($"{path}:{line}: ", e.Message);
        Assert.Contains(what, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
    }

    [Fact]
    public void Load_WrongNumberOfColumns()
    {
        AssertBad(GlueTask.Sst2, "sentence\tlabel\nfine\t1\nno label here\n", 3, "expected 2 tab-separated fields, found 1");
        AssertBad(GlueTask.Rte, "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\textra\n", 2, "expected 4 tab-separated fields, found 5");
        AssertBad(GlueTask.CoLA, "gj04\t1\t\tFine.\ngj04\t1\tOnly three.\n", 2, "expected 4 tab-separated fields, found 3");
        AssertBad(GlueTask.Mrpc, "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta \"quoted\ttab\" b\tc\n", 2, "found 6");
    }

    [Fact]
    public void Load_UnknownLabel()
    {
        AssertBad(GlueTask.Sst2, "sentence\tlabel\nfine\t1\nodd\t2\n", 3, "unknown SST-2 label '2'");
        AssertBad(GlueTask.Rte, "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n", 2, "unknown RTE label 'maybe'");
        AssertBad(GlueTask.CoLA, "gj04\tyes\t\tFine.\n", 1, "unknown CoLA label 'yes'");
        AssertBad(GlueTask.Mnli, "index\tsentence1\tsentence2\tgold_label\n0\ta\tb\tentailment\n1\ta\tb\t-\n", 3, "unknown MNLI label '-'");
        AssertBad(GlueTask.Wnli, "index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1 \n", 2, "unknown WNLI label '1 '");
    }

    [Fact]
    public void Load_BadStsbScore()
    {
        const string H = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n";
        AssertBad(GlueTask.StsB, H + "0\tg\tf\ty\t0\tn\tn\ta\tb\t4.2\n1\tg\tf\ty\t0\tn\tn\ta\tb\thigh\n", 3, "STS-B score 'high' is not a number");
        AssertBad(GlueTask.StsB, H + "0\tg\tf\ty\t0\tn\tn\ta\tb\t5.5\n", 2, "outside [0, 5]");
        AssertBad(GlueTask.StsB, H + "0\tg\tf\ty\t0\tn\tn\ta\tb\t-0.1\n", 2, "outside [0, 5]");
        AssertBad(GlueTask.StsB, H + "0\tg\tf\ty\t0\tn\tn\ta\tb\tNaN\n", 2, "not a number");
    }

    [Fact]
    public void Load_NoExamples()
    {
        AssertBad(GlueTask.Sst2, "", 1, "no examples");
        AssertBad(GlueTask.CoLA, "", 1, "no examples");
        AssertBad(GlueTask.Sst2, "sentence\tlabel\n", 2, "no examples");
        AssertBad(GlueTask.Sst2, "sentence\tlabel\n\n\n", 2, "no examples");
        AssertBad(GlueTask.Rte, "index\tsentence1\tsentence2\tlabel", 2, "no examples");
    }

    [Fact]
    public void Load_InvalidUtf8()
    {
        using var tmp = new TestData.TempDir();
        byte[] bytes = [.. "sentence\tlabel\nfine\t1\nbad "u8, 0xC3, 0x28, .. " byte\t0\n"u8];
        File.WriteAllBytes(tmp["x.tsv"], bytes);
        AssertBadFile(GlueTask.Sst2, tmp["x.tsv"], 3, "not valid UTF-8");
        // a lone BOM byte sequence cut short is invalid too
        byte[] cutBom = [0xEF, 0xBB, .. "sentence\tlabel\nfine\t1\n"u8];
        File.WriteAllBytes(tmp["y.tsv"], cutBom);
        AssertBadFile(GlueTask.Sst2, tmp["y.tsv"], 1, "not valid UTF-8");
    }

    [Fact]
    public void Load_OtherMalformedFiles()
    {
        // an empty line followed by more rows
        AssertBad(GlueTask.Sst2, "sentence\tlabel\nfine\t1\n\nlater\t0\n", 3, "empty line");
        // a header-less file for a task whose files have a header
        AssertBad(GlueTask.Sst2, "fine\t1\nbad\t0\n", 1, "header has no 'sentence' column");
        // an RTE file loaded as MRPC
        AssertBad(GlueTask.Mrpc, "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n", 1, "header has no '#1 String' column");
        // control characters in a value are escaped, so the message stays on one line
        AssertBad(GlueTask.Sst2, "sentence\tlabel\nfine\t1\u000b\r\n", 2, "unknown SST-2 label '1\\u000b'");
    }

    [Fact]
    public void Load_MissingFile()
    {
        using var tmp = new TestData.TempDir();
        Assert.Throws<FileNotFoundException>(() => Glue.Load(GlueTask.Sst2, tmp["none.tsv"]));
    }
}
