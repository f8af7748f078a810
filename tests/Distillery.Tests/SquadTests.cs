using System.Text.Json;
using Distillery.Data;
using Distillery.Text;

namespace Distillery.Tests;

public class SquadTests
{
    private static readonly Lazy<IReadOnlyList<SquadQuestion>> Dev = new(() => Squad.Load(TestData.Path("squad", "dev-v1.1.json")));
    private static readonly Lazy<BertTextTokenizer> Tok =
        new(() => BertTextTokenizer.FromVocab(TestData.Path("tokenizers", "bert-base-uncased", "vocab.txt")));

    // ------------------------------------------------------------------------------------------------------------
    // Loading and splitting the real dev file
    // ------------------------------------------------------------------------------------------------------------

    [Fact]
    public void Load_RealDevFile_HasAllArticlesAndQuestions()
    {
        var dev = Dev.Value;
        Assert.Equal(10_570, dev.Count);
        Assert.Equal(48, dev.Select(q => q.Title).Distinct().Count());
        Assert.Equal(dev.Count, dev.Select(q => q.Id).Distinct().Count());
        Assert.Equal(34_726, dev.Sum(q => q.Answers.Count));
        Assert.All(dev, q => Assert.False(q.IsImpossible));
        Assert.All(dev, q => Assert.All(q.Answers, a => Assert.Equal(a.Text, q.Context.Substring(a.Start, a.Text.Length))));

        var first = dev[0];
        Assert.Equal("56be4db0acb8001400a502ec", first.Id);
        Assert.Equal("Super_Bowl_50", first.Title);
        Assert.Equal("Which NFL team represented the AFC at Super Bowl 50?", first.Question);
        Assert.Equal(new SquadAnswer("Denver Broncos", 177), first.Answers[0]);
    }

    [Fact]
    public void SplitArticles_IsDisjointCompleteAndDeterministic()
    {
        var dev = Dev.Value;
        var (train, eval) = Squad.SplitArticles(dev, 40, seed: 7);

        var trainTitles = train.Select(q => q.Title).ToHashSet();
        var evalTitles = eval.Select(q => q.Title).ToHashSet();
        Assert.Equal(40, trainTitles.Count);
        Assert.Equal(8, evalTitles.Count);
        Assert.Empty(trainTitles.Intersect(evalTitles));
        Assert.Equal(dev.Count, train.Count + eval.Count);
        Assert.True(dev.Select(q => q.Id).ToHashSet().SetEquals(train.Concat(eval).Select(q => q.Id)));
        // Each part keeps the file order.
        var position = dev.Select((q, i) => (q.Id, i)).ToDictionary(p => p.Id, p => p.i);
        Assert.True(train.Select(q => position[q.Id]).SequenceEqual(train.Select(q => position[q.Id]).Order()));

        var (train2, eval2) = Squad.SplitArticles(dev, 40, seed: 7);
        Assert.Equal(train.Select(q => q.Id), train2.Select(q => q.Id));
        Assert.Equal(eval.Select(q => q.Id), eval2.Select(q => q.Id));

        var (_, evalOther) = Squad.SplitArticles(dev, 40, seed: 8);
        Assert.False(evalTitles.SetEquals(evalOther.Select(q => q.Title)), "another seed should give another split");

        Assert.Throws<ArgumentOutOfRangeException>(() => Squad.SplitArticles(dev, 0, 7));
        Assert.Throws<ArgumentOutOfRangeException>(() => Squad.SplitArticles(dev, 48, 7));
        Assert.Equal(47, Squad.SplitArticles(dev, 47, 7).Train.Select(q => q.Title).Distinct().Count());
    }

    // ------------------------------------------------------------------------------------------------------------
    // Official normalisation and metrics
    // ------------------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData("The Cat's  hat!", "cats hat")]          // lower, punctuation removed (not replaced), article dropped
    [InlineData("Theatre an apple", "theatre apple")]    // articles only as whole words
    [InlineData("  \tA\n banana  ", "banana")]           // whitespace collapsed and trimmed
    [InlineData("a-b c.d", "ab cd")]                     // '-' and '.' are deleted, joining the pieces
    [InlineData("the", "")]
    [InlineData("", "")]
    [InlineData("An an AN the THE a", "")]
    [InlineData("Élan, naïve «x»", "élan naïve «x»")]   // only ASCII punctuation (string.punctuation) is removed
    [InlineData("$1,000 (approx.)", "1000 approx")]
    [InlineData("the_cat", "thecat")]                    // '_' is punctuation, removed before the article rule
    public void NormalizeAnswer_MatchesOfficialScript(string input, string expected) =>
        Assert.Equal(expected, Squad.NormalizeAnswer(input));

    private static SquadQuestion Q(string id, params string[] golds) =>
        new(id, "t", string.Join(" | ", golds), "q?", golds.Select(g => new SquadAnswer(g, 0)).ToArray(), false);

    private static SquadQuestion Impossible(string id) => new(id, "t", "ctx", "q?", [], true);

    private static (double Em, double F1) Score(SquadQuestion q, string prediction)
    {
        var r = Squad.Evaluate([q], new Dictionary<string, string> { [q.Id] = prediction });
        return (r["exact_match"], r["f1"]);
    }

    [Fact]
    public void Evaluate_PartialOverlapF1_HandComputed()
    {
        // pred "the cat sat" -> "cat sat" (2 tokens); gold "a cat sat on mat" -> "cat sat on mat" (4 tokens).
        // common = {cat, sat} = 2; precision = 2/2 = 1; recall = 2/4 = 0.5; F1 = 2*1*0.5/(1+0.5) = 2/3. EM = 0.
        var (em, f1) = Score(Q("x", "a cat sat on mat"), "the cat sat");
        Assert.Equal(0, em);
        Assert.Equal(100.0 * 2 / 3, f1, 9);

        // Repeated tokens count with multiplicity: pred "cat cat" vs gold "cat": common 1, P = 1/2, R = 1, F1 = 2/3.
        Assert.Equal(100.0 * 2 / 3, Score(Q("x", "cat"), "cat cat").F1, 9);
        // No overlap at all.
        Assert.Equal((0.0, 0.0), Score(Q("x", "Denver Broncos"), "Carolina Panthers"));
        // Normalisation makes these exact.
        Assert.Equal((100.0, 100.0), Score(Q("x", "the Denver Broncos"), "Denver Broncos."));
    }

    [Fact]
    public void Evaluate_TakesMaxOverGoldAnswers_AndAveragesWithMissingAsZero()
    {
        var q1 = Q("q1", "Denver Broncos", "Broncos", "the Denver Broncos");
        // "Denver": vs "Denver Broncos" P = 1, R = 1/2 -> F1 2/3; vs "Broncos" 0; vs "the Denver Broncos" 2/3. Max 2/3.
        var denver = Score(q1, "Denver");
        Assert.Equal(0, denver.Em);
        Assert.Equal(100.0 * 2 / 3, denver.F1, 9);
        Assert.Equal((100.0, 100.0), Score(q1, "broncos"));

        // pred "red blue green" vs golds "red blue green yellow" (P 3/3, R 3/4, F1 2*0.75/1.75 = 6/7) and "green"
        // (P 1/3, R 1, F1 1/2): the best gold wins.
        var q2 = Q("q2", "red blue green yellow", "green");
        Assert.Equal(100.0 * 6 / 7, Score(q2, "red blue green").F1, 9);

        var q3 = Q("q3", "Paris");
        var preds = new Dictionary<string, string> { ["q1"] = "Denver Broncos", ["q2"] = "green" }; // q3 missing
        var r = Squad.Evaluate([q1, q2, q3], preds);
        Assert.Equal(100.0 * 2 / 3, r["exact_match"], 9);
        Assert.Equal(100.0 * 2 / 3, r["f1"], 9);
        Assert.Equal(3, r["total"]);
        Assert.False(r.ContainsKey("HasAns_f1"), "v1.1 data has no HasAns/NoAns breakdown");
    }

    [Fact]
    public void Evaluate_Version2_EmptyAnswersAndBreakdown()
    {
        var has = Q("h", "Paris");
        var none1 = Impossible("n1");
        var none2 = Impossible("n2");
        var preds = new Dictionary<string, string> { ["h"] = "Paris", ["n1"] = "", ["n2"] = "London" };
        var r = Squad.Evaluate([has, none1, none2], preds);

        Assert.Equal(100.0 * 2 / 3, r["exact_match"], 9);
        Assert.Equal(100.0 * 2 / 3, r["f1"], 9);
        Assert.Equal(100, r["HasAns_exact"]);
        Assert.Equal(100, r["HasAns_f1"]);
        Assert.Equal(1, r["HasAns_total"]);
        Assert.Equal(50, r["NoAns_exact"]);
        Assert.Equal(50, r["NoAns_f1"]);
        Assert.Equal(2, r["NoAns_total"]);

        // An answerable question predicted as "no answer" scores 0; "the" normalises to "" and counts as empty.
        var r2 = Squad.Evaluate([has, none1], new Dictionary<string, string> { ["h"] = "", ["n1"] = "the" });
        Assert.Equal(0, r2["HasAns_f1"]);
        Assert.Equal(100, r2["NoAns_f1"]);
        Assert.Equal(100, r2["NoAns_exact"]);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Windowing
    // ------------------------------------------------------------------------------------------------------------

    private static readonly SquadOptions Small = new() { MaxLength = 128, DocStride = 32 };

    private static int FirstContextToken(SquadFeature f) => Array.FindIndex(f.ContextOffsets, o => o.Start >= 0);

    [Fact]
    public void Featurize_LongContext_GivesOverlappingWindowsWithinMaxLength()
    {
        var tok = Tok.Value;
        var questions = Dev.Value.Take(300).ToArray();
        var features = Squad.Featurize(tok, questions, Small);
        Assert.True(features.Count > 450, $"expected many windows at MaxLength 128, got {features.Count} for 300 questions");

        int multiWindow = 0;
        foreach (var group in features.GroupBy(f => f.QuestionIndex))
        {
            var q = questions[group.Key];
            var windows = group.ToArray();
            Assert.Equal(Enumerable.Range(0, windows.Length), windows.Select(w => w.WindowIndex));
            var full = tok.Tokenize(q.Context);
            int qLen = Math.Min(tok.Tokenize(q.Question).Ids.Length, Small.MaxQueryLength);
            int window = Small.MaxLength - qLen - 3;
            if (windows.Length > 1) multiWindow++;

            for (int w = 0; w < windows.Length; w++)
            {
                var f = windows[w];
                int n = f.InputIds.Length;
                Assert.True(n <= Small.MaxLength);
                Assert.Equal(n, f.TokenTypeIds.Length);
                Assert.Equal(n, f.ContextOffsets.Length);
                Assert.Equal(tok.ClsId, f.InputIds[0]);
                Assert.Equal(tok.SepId, f.InputIds[qLen + 1]);
                Assert.Equal(tok.SepId, f.InputIds[n - 1]);
                Assert.Equal(qLen + 2, FirstContextToken(f));
                for (int i = 0; i < n; i++)
                {
                    Assert.Equal(i >= qLen + 2 ? 1 : 0, f.TokenTypeIds[i]);
                    Assert.Equal(i >= qLen + 2 && i < n - 1, f.IsContext(i));
                }
                if (w < windows.Length - 1) Assert.Equal(Small.MaxLength, n); // all but the last window are full

                // The window's context is the slice of the whole context's tokens starting at w * (window - DocStride).
                int from = w * (window - Small.DocStride);
                int count = n - qLen - 3;
                Assert.Equal(full.Ids.AsSpan(from, count).ToArray(), f.InputIds.AsSpan(qLen + 2, count).ToArray());
                Assert.Equal(full.Offsets.AsSpan(from, count).ToArray(), f.ContextOffsets.AsSpan(qLen + 2, count).ToArray());
                if (w == windows.Length - 1) Assert.Equal(full.Ids.Length, from + count); // the last one reaches the end

                if (w > 0)
                {
                    // Exactly DocStride context tokens are shared with the previous window.
                    var prev = windows[w - 1];
                    var prevTail = prev.ContextOffsets[^(Small.DocStride + 1)..^1];
                    var head = f.ContextOffsets.AsSpan(qLen + 2, Small.DocStride).ToArray();
                    Assert.Equal(prevTail, head);
                }
            }
        }
        Assert.True(multiWindow > 100, $"only {multiWindow} questions got several windows");
    }

    [Fact]
    public void Featurize_AnswerLabels_MapBackToTheAnswerText()
    {
        var tok = Tok.Value;
        var questions = Dev.Value.Take(300).ToArray();
        var features = Squad.Featurize(tok, questions, Small);

        int containing = 0, notContaining = 0, aligned = 0;
        var answered = new HashSet<int>();
        foreach (var f in features)
        {
            var q = questions[f.QuestionIndex];
            var a = q.Answers[0];
            int startChar = a.Start, endChar = a.Start + a.Text.Length;
            int c0 = FirstContextToken(f), c1 = f.InputIds.Length - 2;
            bool contains = f.ContextOffsets[c0].Start <= startChar && f.ContextOffsets[c1].End >= endChar;
            if (!contains)
            {
                Assert.Equal((0, 0), (f.StartPosition, f.EndPosition));
                notContaining++;
                continue;
            }
            containing++;
            answered.Add(f.QuestionIndex);
            int s = f.StartPosition, e = f.EndPosition;
            Assert.True(f.IsContext(s) && f.IsContext(e) && e >= s, $"{q.Id}: bad span {s}..{e}");
            // The span is the smallest run of tokens covering the answer's characters.
            Assert.True(f.ContextOffsets[s].Start <= startChar && f.ContextOffsets[e].End >= endChar);
            Assert.True(s == c1 || f.ContextOffsets[s + 1].Start > startChar);
            Assert.True(e == c0 || f.ContextOffsets[e - 1].End < endChar);

            string text = q.Context[f.ContextOffsets[s].Start..f.ContextOffsets[e].End];
            // Answers that begin and end on token boundaries come back exactly; the rest (an answer that cuts a word piece,
            // e.g. "ham" inside "Birmingham") come back as the covering tokens, which contain it.
            if (f.ContextOffsets[s].Start == startChar && f.ContextOffsets[e].End == endChar)
            {
                aligned++;
                Assert.Equal(a.Text, text);
            }
            Assert.Contains(Squad.NormalizeAnswer(a.Text), Squad.NormalizeAnswer(text));
        }
        Assert.True(containing > 300 && notContaining > 100, $"{containing} windows contain the answer, {notContaining} do not");
        Assert.True(aligned >= 0.95 * containing, $"only {aligned} of {containing} answers align with token boundaries");
        Assert.Equal(questions.Length, answered.Count); // every question has a window that holds its answer
    }

    [Fact]
    public void Featurize_CutsLongQuestions_LabelsImpossibleAsCls_AndRejectsBadOptions()
    {
        var tok = Tok.Value;
        string longQuestion = string.Join(" ", Enumerable.Repeat("why", 100)) + "?";
        var q = new SquadQuestion("x", "t", "Paris is the capital of France.", longQuestion, [new SquadAnswer("Paris", 0)], false);
        var f = Assert.Single(Squad.Featurize(tok, [q], new SquadOptions()));
        Assert.Equal(1 + 64 + 1 + 7 + 1, f.InputIds.Length); // question cut to MaxQueryLength = 64 tokens
        Assert.Equal((66, 66), (f.StartPosition, f.EndPosition));
        Assert.Equal("Paris", q.Context[f.ContextOffsets[66].Start..f.ContextOffsets[66].End]);

        var none = new SquadQuestion("y", "t", "Paris is the capital of France.", "What is the capital of Spain?", [], true);
        var g = Assert.Single(Squad.Featurize(tok, [none], new SquadOptions()));
        Assert.Equal((0, 0), (g.StartPosition, g.EndPosition));

        Assert.Throws<ArgumentOutOfRangeException>(() =>
            Squad.Featurize(tok, [q], new SquadOptions { MaxLength = 64, MaxQueryLength = 32, DocStride = 29 }));
    }

    // ------------------------------------------------------------------------------------------------------------
    // Decoding
    // ------------------------------------------------------------------------------------------------------------

    private const string Fox = "The quick brown fox jumps over the lazy dog.";

    /// <summary>Index of the context token of <paramref name="f"/> whose text is <paramref name="word"/> (the first one).</summary>
    private static int TokenOf(SquadFeature f, string context, string word)
    {
        for (int i = 0; i < f.ContextOffsets.Length; i++)
            if (f.IsContext(i) && context[f.ContextOffsets[i].Start..f.ContextOffsets[i].End] == word) return i;
        throw new InvalidOperationException($"no token '{word}' in window {f.WindowIndex}");
    }

    private static (float[] Start, float[] End) Logits(SquadFeature f, float fill = -10f) =>
        (Enumerable.Repeat(fill, f.InputIds.Length).ToArray(), Enumerable.Repeat(fill, f.InputIds.Length).ToArray());

    private static string DecodeOne(SquadQuestion q, SquadFeature f, float[] start, float[] end, SquadOptions? options = null) =>
        Squad.Decode([q], [f], [start], [end], options ?? new SquadOptions())[q.Id];

    [Fact]
    public void Decode_HandMadeLogits_PickTheSpan()
    {
        var q = new SquadQuestion("fox", "t", Fox, "Who jumps?", [new SquadAnswer("fox", 16)], false);
        var f = Assert.Single(Squad.Featurize(Tok.Value, [q], new SquadOptions()));
        var (s, e) = Logits(f);
        s[TokenOf(f, Fox, "quick")] = 5;
        e[TokenOf(f, Fox, "fox")] = 5;
        Assert.Equal("quick brown fox", DecodeOne(q, f, s, e));

        // Padded logits (longer than the feature) are accepted; padding positions are never chosen.
        var sp = s.Concat(Enumerable.Repeat(100f, 8)).ToArray();
        var ep = e.Concat(Enumerable.Repeat(100f, 8)).ToArray();
        Assert.Equal("quick brown fox", DecodeOne(q, f, sp, ep));
    }

    [Fact]
    public void Decode_NeverChoosesInvalidSpans()
    {
        var q = new SquadQuestion("fox", "t", Fox, "Who jumps?", [new SquadAnswer("fox", 16)], false);
        var f = Assert.Single(Squad.Featurize(Tok.Value, [q], new SquadOptions()));
        var (s, e) = Logits(f, -1000f);
        int the = TokenOf(f, Fox, "The"), jumps = TokenOf(f, Fox, "jumps"), lazy = TokenOf(f, Fox, "lazy"), dog = TokenOf(f, Fox, "dog");
        // Every other logit is -1000, so any pair with an unmarked token scores below the marked valid span.
        s[0] = e[0] = 100;                        // [CLS]: not context (v1 never predicts it)
        s[1] = 90; e[f.InputIds.Length - 1] = 90; // a question token and the final [SEP]: not context
        s[dog] = 80; e[jumps] = 80;               // end before start
        s[the] = 70;                              // The..jumps: 5 tokens, longer than MaxAnswerLength 3 below
        s[lazy] = 1; e[lazy] = 1;                 // the only valid pair among the marked tokens (dog..lazy: end < start)
        var options = new SquadOptions { MaxAnswerLength = 3 };
        Assert.Equal("lazy", DecodeOne(q, f, s, e, options));
        // With the default MaxAnswerLength 30, "The ... jumps" becomes valid and wins.
        Assert.Equal("The quick brown fox jumps", DecodeOne(q, f, s, e));
        // Only the NBest best starts and ends are considered: with NBest 2 the starts are [CLS] and a question token, the
        // ends [CLS] and [SEP]; no pair is valid, so there is no answer.
        Assert.Equal("", DecodeOne(q, f, s, e, options with { NBest = 2 }));
    }

    private static readonly string Words =
        "apple banana cherry grape lemon mango orange peach pear plum cat dog horse mouse sheep " +
        "goat cow pig duck hen red blue green yellow black white pink brown gray purple";

    [Fact]
    public void Decode_BestSpanAcrossWindowsWins()
    {
        var tok = Tok.Value;
        var q = new SquadQuestion("w", "t", Words, "which?", [new SquadAnswer("white", Words.IndexOf("white", StringComparison.Ordinal))], false);
        var options = new SquadOptions { MaxLength = 24, MaxQueryLength = 4, DocStride = 4 };
        var features = Squad.Featurize(tok, [q], options);
        Assert.True(features.Count >= 2);
        var w0 = features[0];
        var wl = features[^1];
        var logits = features.Select(f => Logits(f)).ToArray();
        logits[0].Start[TokenOf(w0, Words, "banana")] = 3; logits[0].End[TokenOf(w0, Words, "banana")] = 3;
        logits[^1].Start[TokenOf(wl, Words, "white")] = 4; logits[^1].End[TokenOf(wl, Words, "white")] = 4;
        string Run() => Squad.Decode([q], features, logits.Select(l => l.Start).ToArray(), logits.Select(l => l.End).ToArray(), options)["w"];
        Assert.Equal("white", Run());

        logits[0].Start[TokenOf(w0, Words, "banana")] = 5; logits[0].End[TokenOf(w0, Words, "banana")] = 5;
        Assert.Equal("banana", Run());

        // The window is labelled: only the last window holds "white".
        Assert.Equal((0, 0), (w0.StartPosition, w0.EndPosition));
        Assert.Equal(TokenOf(wl, Words, "white"), wl.StartPosition);
    }

    [Fact]
    public void Decode_Version2_NullScoreThreshold()
    {
        var q = new SquadQuestion("fox", "t", Fox, "Who jumps?", [new SquadAnswer("fox", 16)], false);
        var f = Assert.Single(Squad.Featurize(Tok.Value, [q], new SquadOptions()));
        var (s, e) = Logits(f);
        s[0] = 3; e[0] = 3;                                   // null score 6
        s[TokenOf(f, Fox, "fox")] = 2; e[TokenOf(f, Fox, "fox")] = 2; // best span 4: diff 2
        var v2 = new SquadOptions { Version2 = true };
        Assert.Equal("", DecodeOne(q, f, s, e, v2));                                       // 2 > 0
        Assert.Equal("fox", DecodeOne(q, f, s, e, v2 with { NullScoreDiffThreshold = 2.5 }));
        Assert.Equal("fox", DecodeOne(q, f, s, e, v2 with { NullScoreDiffThreshold = 2.0 })); // not strictly greater
        Assert.Equal("fox", DecodeOne(q, f, s, e));                                        // v1 ignores [CLS]

        // The null score is the minimum over windows.
        var q2 = new SquadQuestion("w", "t", Words, "which?", [new SquadAnswer("apple", 0)], false);
        var options = new SquadOptions { MaxLength = 24, MaxQueryLength = 4, DocStride = 4, Version2 = true };
        var features = Squad.Featurize(Tok.Value, [q2], options);
        var logits = features.Select(x => Logits(x)).ToArray();
        logits[0].Start[0] = logits[0].End[0] = 10;  // 20
        logits[^1].Start[0] = logits[^1].End[0] = 1; // 2: the null score
        logits[0].Start[TokenOf(features[0], Words, "apple")] = 3;
        logits[0].End[TokenOf(features[0], Words, "apple")] = 3; // 6 > 2: answer
        var starts = logits.Select(l => l.Start).ToArray();
        var ends = logits.Select(l => l.End).ToArray();
        Assert.Equal("apple", Squad.Decode([q2], features, starts, ends, options)["w"]);
        logits[^1].Start[0] = logits[^1].End[0] = 4; // null 8 > 6
        Assert.Equal("", Squad.Decode([q2], features, starts, ends, options)["w"]);
    }

    [Fact]
    public void Decode_OracleLogitsOnRealQuestions_GiveExactMatch100()
    {
        var questions = Dev.Value.Where((_, i) => i % 50 == 0).Take(200).ToArray(); // spread over the whole file
        var options = new SquadOptions();
        var features = Squad.Featurize(Tok.Value, questions, options);
        var starts = new List<float[]>();
        var ends = new List<float[]>();
        var tooLong = new HashSet<int>(); // questions whose labelled answer is longer than MaxAnswerLength tokens
        foreach (var f in features)
        {
            var (s, e) = Logits(f, 0f);
            if (f.StartPosition != 0)
            {
                s[f.StartPosition] = 10;
                e[f.EndPosition] = 10;
                if (f.EndPosition - f.StartPosition + 1 > options.MaxAnswerLength) tooLong.Add(f.QuestionIndex);
            }
            starts.Add(s);
            ends.Add(e);
        }
        var predictions = Squad.Decode(questions, features, starts, ends, options);
        Assert.Equal(questions.Select(q => q.Id).Order(), predictions.Keys.Order());

        // One of these 200 (57263b16..., a 30+-token first answer) must NOT come back: the length limit holds on real data.
        Assert.InRange(tooLong.Count, 1, 3);
        foreach (int i in tooLong) Assert.NotEqual(questions[i].Answers[0].Text, predictions[questions[i].Id]);

        var kept = questions.Where((_, i) => !tooLong.Contains(i)).ToArray();
        var scores = Squad.Evaluate(kept, predictions);
        Assert.Equal(100, scores["exact_match"]);
        Assert.Equal(100, scores["f1"]);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Bad input
    // ------------------------------------------------------------------------------------------------------------

    private static object Qa(string id, string question, params object[] answers) => new { id, question, answers };

    private static object Ans(string text, object answer_start) => new { text, answer_start };

    private static string WriteJson(TestData.TempDir tmp, string json)
    {
        string path = tmp["x.json"];
        System.IO.File.WriteAllText(path, json);
        return path;
    }

    private static string Doc(params object[] qas) => JsonSerializer.Serialize(new
    {
        version = "1.1",
        data = new[] { new { title = "T", paragraphs = new[] { new { context = "Paris is the capital of France.", qas } } } },
    });

    private static string LoadError(string path)
    {
        var ex = Assert.Throws<InvalidDataException>(() => Squad.Load(path));
        Assert.StartsWith(path + ": ", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        Assert.DoesNotContain('\r', ex.Message);
        return ex.Message;
    }

    [Fact]
    public void Load_SmallValidFiles_IncludingVersion2AndNonBmpOffsets()
    {
        using var tmp = new TestData.TempDir();
        string context = "I like \U0001F600 pizza a lot.";
        string json = JsonSerializer.Serialize(new
        {
            version = "v2.0",
            data = new[]
            {
                new
                {
                    title = "Food",
                    paragraphs = new[]
                    {
                        new
                        {
                            context,
                            qas = new object[]
                            {
                                // answer_start counts code points, as Python does: the emoji is one.
                                new { id = "a", question = "What?", answers = new[] { Ans("pizza", 9) }, is_impossible = false },
                                new { id = "b", question = "Who?", answers = Array.Empty<object>(), is_impossible = true,
                                      plausible_answers = new[] { Ans("I", 0) } },
                            },
                        },
                    },
                },
            },
        });
        var qs = Squad.Load(WriteJson(tmp, json));
        Assert.Equal(2, qs.Count);
        Assert.Equal(new SquadAnswer("pizza", 10), qs[0].Answers[0]); // UTF-16 index
        Assert.Equal("pizza", context.Substring(qs[0].Answers[0].Start, 5));
        Assert.True(qs[1].IsImpossible);
        Assert.Empty(qs[1].Answers);
        Assert.Equal("Food", qs[1].Title);
    }

    [Fact]
    public void Load_NotJson()
    {
        using var tmp = new TestData.TempDir();
        string m = LoadError(WriteJson(tmp, "{ \"data\": [ this is not json"));
        Assert.Contains("not valid JSON", m);
        Assert.Contains("line 1", m);
        Assert.Contains("not valid JSON", LoadError(WriteJson(tmp, "")));
    }

    [Fact]
    public void Load_BadStructure()
    {
        using var tmp = new TestData.TempDir();
        Assert.Contains("\"data\" missing", LoadError(WriteJson(tmp, "{\"version\": \"1.1\"}")));
        Assert.Contains("expected a JSON object", LoadError(WriteJson(tmp, "[1, 2]")));
        Assert.Contains("\"data\": expected an array, found an object", LoadError(WriteJson(tmp, "{\"data\": {}}")));
        Assert.Contains("data[0]: \"paragraphs\" missing", LoadError(WriteJson(tmp, "{\"data\": [{\"title\": \"T\"}]}")));
        Assert.Contains("data[0].paragraphs[0]: \"context\": expected a string, found a number",
            LoadError(WriteJson(tmp, "{\"data\": [{\"title\": \"T\", \"paragraphs\": [{\"context\": 5, \"qas\": []}]}]}")));
        // Nesting beyond MaxDepth is refused by the parser.
        Assert.Contains("not valid JSON", LoadError(WriteJson(tmp, "{\"data\": " + new string('[', 100) + new string(']', 100) + "}")));

        string m = LoadError(WriteJson(tmp, Doc(Qa("q1", "Capital?", Ans("Paris", "0")))));
        Assert.Contains("data[0].paragraphs[0].qas[0] (id q1)", m);
        Assert.Contains("answer_start", m);
        Assert.Contains("(id q2)", LoadError(WriteJson(tmp, Doc(Qa("q1", "Capital?", Ans("Paris", 0)), new { id = "q2", answers = new[] { Ans("Paris", 0) } }))));
    }

    [Fact]
    public void Load_AnswerOutsideContext()
    {
        using var tmp = new TestData.TempDir();
        string m = LoadError(WriteJson(tmp, Doc(Qa("q1", "Capital?", Ans("Paris", 0)), Qa("q-out", "Country?", Ans("France", 500)))));
        Assert.Contains("data[0].paragraphs[0].qas[1] (id q-out)", m);
        Assert.Contains("outside the context", m);
        Assert.Contains("(id q-neg)", LoadError(WriteJson(tmp, Doc(Qa("q-neg", "Capital?", Ans("Paris", -1))))));
        Assert.Contains("runs past the end", LoadError(WriteJson(tmp, Doc(Qa("q-end", "Country?", Ans("France. And more", 24))))));
    }

    [Fact]
    public void Load_AnswerTextMismatch()
    {
        using var tmp = new TestData.TempDir();
        string m = LoadError(WriteJson(tmp, Doc(Qa("q-mis", "Capital?", Ans("Paris", 0), Ans("London", 0)))));
        Assert.Contains("(id q-mis)", m);
        Assert.Contains("\"answers\"[1]", m);
        Assert.Contains("does not match the context at 0 (\"Paris \")", m);
        Assert.Contains("empty answer", LoadError(WriteJson(tmp, Doc(Qa("q-empty", "Capital?", Ans("", 0))))));
    }

    [Fact]
    public void Load_DuplicateId()
    {
        using var tmp = new TestData.TempDir();
        string m = LoadError(WriteJson(tmp, Doc(Qa("dup", "Capital?", Ans("Paris", 0)), Qa("dup", "Country?", Ans("France", 24)))));
        Assert.Contains("data[0].paragraphs[0].qas[1] (id dup)", m);
        Assert.Contains("duplicate question id (first at data[0].paragraphs[0].qas[0])", m);
    }

    [Fact]
    public void Load_QuestionWithoutAnswers()
    {
        using var tmp = new TestData.TempDir();
        Assert.Contains("(id q-none): no answers", LoadError(WriteJson(tmp, Doc(Qa("q-none", "Capital?")))));
        Assert.Contains("(id q-none): no answers",
            LoadError(WriteJson(tmp, Doc(new { id = "q-none", question = "?", answers = Array.Empty<object>(), is_impossible = false }))));
        Assert.Contains("(id q-both): is_impossible is true but the question has answers",
            LoadError(WriteJson(tmp, Doc(new { id = "q-both", question = "?", answers = new[] { Ans("Paris", 0) }, is_impossible = true }))));
        Assert.Contains("(id q-bool): \"is_impossible\": expected true or false, found a string",
            LoadError(WriteJson(tmp, Doc(new { id = "q-bool", question = "?", answers = new[] { Ans("Paris", 0) }, is_impossible = "no" }))));
    }

    [Fact]
    public void Load_MissingFile_Throws() =>
        Assert.Throws<FileNotFoundException>(() => Squad.Load(Path.Combine(Path.GetTempPath(), "distillery-no-such-squad.json")));
}
