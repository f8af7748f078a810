using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Distillery.Text;

namespace Distillery.Data;

/// <summary>One gold answer: its text and its start in <see cref="SquadQuestion.Context"/>.</summary>
/// <param name="Text">The answer text; always equals <c>Context.Substring(Start, Text.Length)</c>.</param>
/// <param name="Start">
/// Start of the answer in the context as a C# string index (UTF-16 units). The file counts code points (Python string
/// indices); <see cref="Squad.Load"/> converts, which changes the value only after a character outside the BMP.
/// </param>
public sealed record SquadAnswer(string Text, int Start);

/// <summary>One SQuAD question with its paragraph.</summary>
/// <param name="Id">The question id (unique within a file).</param>
/// <param name="Title">Title of the article the paragraph belongs to.</param>
/// <param name="Context">The paragraph.</param>
/// <param name="Question">The question text.</param>
/// <param name="Answers">Gold answers (SQuAD dev has several per question); empty only for v2.0 impossible questions.</param>
/// <param name="IsImpossible">v2.0: the paragraph does not answer the question.</param>
public sealed record SquadQuestion(string Id, string Title, string Context, string Question, IReadOnlyList<SquadAnswer> Answers,
    bool IsImpossible);

/// <summary>
/// One window of one question: <c>[CLS] question [SEP] context-chunk [SEP]</c>, unpadded.
/// </summary>
/// <param name="QuestionIndex">Index of the question in the list given to <see cref="Squad.Featurize"/>.</param>
/// <param name="WindowIndex">0 for the first window of the question, 1 for the next, ...</param>
/// <param name="InputIds">Token ids.</param>
/// <param name="TokenTypeIds">0 for [CLS], the question and the first [SEP]; 1 for the context chunk and the last [SEP].</param>
/// <param name="ContextOffsets">
/// For each token, its [start,end) character span in the question's <see cref="SquadQuestion.Context"/>, or (-1,-1) for
/// tokens that are not context ([CLS], question, [SEP]).
/// </param>
/// <param name="StartPosition">
/// Token index of the start of the (first) gold answer in this window, or 0 (the [CLS] token) when the answer is not
/// wholly inside the window or the question is impossible.
/// </param>
/// <param name="EndPosition">Token index of the end (inclusive) of the answer, or 0 as <paramref name="StartPosition"/>.</param>
public sealed record SquadFeature(int QuestionIndex, int WindowIndex, int[] InputIds, int[] TokenTypeIds,
    (int Start, int End)[] ContextOffsets, int StartPosition, int EndPosition)
{
    /// <summary>Whether token <paramref name="i"/> belongs to the context.</summary>
    public bool IsContext(int i) => (uint)i < (uint)ContextOffsets.Length && ContextOffsets[i].Start >= 0;
}

/// <summary>A decoded answer span.</summary>
/// <param name="Start">First character of the answer in the context.</param>
/// <param name="End">One past its last character.</param>
/// <param name="Score">Start logit + end logit of the span.</param>
/// <param name="NullScore">The question's lowest [CLS] start + end logit over its windows (SQuAD v2.0's no-answer score).</param>
public sealed record SquadSpan(int Start, int End, double Score, double NullScore);

/// <summary>Windowing and decoding settings (the defaults are Hugging Face run_qa's).</summary>
public sealed record SquadOptions
{
    /// <summary>Tokens per window, special tokens included (max_seq_length).</summary>
    public int MaxLength { get; init; } = 384;
    /// <summary>Context tokens shared by consecutive windows of one question (HF's stride: an overlap, not a step).</summary>
    public int DocStride { get; init; } = 128;
    /// <summary>Question tokens kept; longer questions are cut (as the original BERT run_squad's max_query_length).</summary>
    public int MaxQueryLength { get; init; } = 64;
    /// <summary>Longest answer, in tokens, that decoding may predict.</summary>
    public int MaxAnswerLength { get; init; } = 30;
    /// <summary>Start and end candidates per window considered by decoding.</summary>
    public int NBest { get; init; } = 20;
    /// <summary>v2.0: predict no answer when null score minus best span score exceeds this.</summary>
    public double NullScoreDiffThreshold { get; init; }
    /// <summary>Decode as SQuAD v2.0 (questions may have no answer).</summary>
    public bool Version2 { get; init; }
}

/// <summary>
/// SQuAD v1.1 / v2.0: reading the JSON, the article split, Hugging Face run_qa's windowing and answer decoding, and the
/// official evaluation (exact match and token F1).
/// </summary>
public static class Squad
{
    private const int MaxJsonDepth = 16;
    private const int NoAnswer = 0; // the [CLS] token

    // ---------------------------------------------------------------------------------------------------------------
    // Loading
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Reads a SQuAD v1.1 or v2.0 file
    /// (<c>{"version", "data":[{"title","paragraphs":[{"context","qas":[{"id","question","answers":[{"text","answer_start"}], "is_impossible"?}]}]}]}</c>;
    /// other fields, such as v2.0's plausible_answers, are ignored). Every problem (not JSON, wrong structure or types,
    /// duplicate question id, an answer outside its context or whose text differs from the context there, an empty
    /// answer, a question without answers that is not marked is_impossible, an impossible question with answers) throws
    /// <see cref="InvalidDataException"/> with one line: <c>"&lt;path&gt;: &lt;where&gt;: &lt;what&gt;"</c>, where is e.g.
    /// <c>data[3].paragraphs[0].qas[5] (id 56be...)</c>.
    /// </summary>
    public static IReadOnlyList<SquadQuestion> Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: SQuAD file missing", path);

        JsonDocument doc;
        try
        {
            using var stream = File.OpenRead(path); // the stream overload skips a UTF-8 byte order mark
            doc = JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = MaxJsonDepth });
        }
        catch (JsonException ex)
        {
            string where = ex.LineNumber is long line ? $"line {line + 1}, byte {ex.BytePositionInLine + 1}" : "(file)";
            throw Error(path, where, $"not valid JSON (or nested deeper than {MaxJsonDepth}): {FirstSentence(ex.Message)}", ex);
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Error(path, "(root)", $"expected a JSON object, found {Kind(root)}");
            if (root.TryGetProperty("version", out var version) && version.ValueKind != JsonValueKind.String)
                throw Error(path, "version", $"expected a string, found {Kind(version)}");
            var data = Required(path, root, "data", JsonValueKind.Array, "(root)");

            var questions = new List<SquadQuestion>();
            var ids = new Dictionary<string, string>(StringComparer.Ordinal); // id -> where first seen
            int ai = 0;
            foreach (var article in data.EnumerateArray())
            {
                string aw = $"data[{ai}]";
                if (article.ValueKind != JsonValueKind.Object) throw Error(path, aw, $"expected an object, found {Kind(article)}");
                string title = Required(path, article, "title", JsonValueKind.String, aw).GetString()!;
                var paragraphs = Required(path, article, "paragraphs", JsonValueKind.Array, aw);
                int pi = 0;
                foreach (var paragraph in paragraphs.EnumerateArray())
                {
                    string pw = $"{aw}.paragraphs[{pi}]";
                    if (paragraph.ValueKind != JsonValueKind.Object) throw Error(path, pw, $"expected an object, found {Kind(paragraph)}");
                    string context = Required(path, paragraph, "context", JsonValueKind.String, pw).GetString()!;
                    var qas = Required(path, paragraph, "qas", JsonValueKind.Array, pw);
                    int[]? codePointToUtf16 = CodePointMap(context);
                    int qi = 0;
                    foreach (var qa in qas.EnumerateArray())
                    {
                        questions.Add(ReadQuestion(path, $"{pw}.qas[{qi}]", qa, title, context, codePointToUtf16, ids));
                        qi++;
                    }
                    pi++;
                }
                ai++;
            }
            return questions;
        }
    }

    private static SquadQuestion ReadQuestion(string path, string where, JsonElement qa, string title, string context,
        int[]? codePointToUtf16, Dictionary<string, string> ids)
    {
        if (qa.ValueKind != JsonValueKind.Object) throw Error(path, where, $"expected an object, found {Kind(qa)}");
        string id = Required(path, qa, "id", JsonValueKind.String, where).GetString()!;
        if (id.Length == 0) throw Error(path, where, "empty question id");
        string qw = $"{where} (id {Shorten(id)})";
        if (ids.TryGetValue(id, out string? first)) throw Error(path, qw, $"duplicate question id (first at {first})");
        ids.Add(id, where);

        string question = Required(path, qa, "question", JsonValueKind.String, qw).GetString()!;
        bool impossible = false;
        if (qa.TryGetProperty("is_impossible", out var imp))
        {
            if (imp.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                throw Error(path, qw, $"\"is_impossible\": expected true or false, found {Kind(imp)}");
            impossible = imp.GetBoolean();
        }

        var answersJson = Required(path, qa, "answers", JsonValueKind.Array, qw);
        var answers = new List<SquadAnswer>();
        int k = 0;
        foreach (var a in answersJson.EnumerateArray())
        {
            string at = $"\"answers\"[{k}]";
            if (a.ValueKind != JsonValueKind.Object) throw Error(path, qw, $"{at}: expected an object, found {Kind(a)}");
            if (!a.TryGetProperty("text", out var textEl) || textEl.ValueKind != JsonValueKind.String)
                throw Error(path, qw, $"{at}: \"text\" missing or not a string");
            if (!a.TryGetProperty("answer_start", out var startEl) || startEl.ValueKind != JsonValueKind.Number)
                throw Error(path, qw, $"{at}: \"answer_start\" missing or not a number");
            if (!startEl.TryGetInt32(out int start))
                throw Error(path, qw, $"{at}: \"answer_start\" {Shorten(startEl.GetRawText())} is not an integer");
            string text = textEl.GetString()!;
            if (text.Length == 0) throw Error(path, qw, $"{at}: empty answer text");
            int cpLength = codePointToUtf16 is null ? context.Length : codePointToUtf16.Length - 1;
            if (start < 0 || start >= cpLength)
                throw Error(path, qw, $"{at}: answer_start {start} is outside the context (length {cpLength})");
            int s = codePointToUtf16 is null ? start : codePointToUtf16[start];
            if (s + text.Length > context.Length)
                throw Error(path, qw, $"{at}: answer \"{Shorten(text)}\" at {start} runs past the end of the context (length {cpLength})");
            if (string.CompareOrdinal(context, s, text, 0, text.Length) != 0)
                throw Error(path, qw,
                    $"{at}: answer text \"{Shorten(text)}\" does not match the context at {start} (\"{Shorten(context.Substring(s, text.Length))}\")");
            answers.Add(new SquadAnswer(text, s));
            k++;
        }

        if (impossible && answers.Count > 0) throw Error(path, qw, "is_impossible is true but the question has answers");
        if (!impossible && answers.Count == 0)
            throw Error(path, qw, "no answers (only a SQuAD v2.0 question marked \"is_impossible\": true may have none)");
        return new SquadQuestion(id, title, context, question, answers, impossible);
    }

    /// <summary>code point index -> UTF-16 index (length = code points + 1), or null when the two agree (no surrogates).</summary>
    private static int[]? CodePointMap(string s)
    {
        if (!s.Any(char.IsSurrogate)) return null;
        var map = new List<int>(s.Length + 1);
        for (int i = 0; i < s.Length; i++)
        {
            map.Add(i);
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
        }
        map.Add(s.Length);
        return [.. map];
    }

    private static JsonElement Required(string path, JsonElement obj, string name, JsonValueKind kind, string where)
    {
        if (!obj.TryGetProperty(name, out var value)) throw Error(path, where, $"\"{name}\" missing");
        if (value.ValueKind != kind)
            throw Error(path, where, $"\"{name}\": expected {Article(kind)}, found {Kind(value)}");
        return value;
    }

    private static string Article(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        _ => kind.ToString().ToLowerInvariant(),
    };

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        var k => Article(k),
    };

    private static InvalidDataException Error(string path, string where, string what, Exception? inner = null) =>
        new(OneLine($"{path}: {where}: {what}"), inner);

    private static string OneLine(string s)
    {
        if (s.IndexOfAny(['\r', '\n', '\u0085', '\u2028', '\u2029']) < 0) return s;
        var sb = new StringBuilder(s.Length);
        foreach (char c in s) sb.Append(c is '\r' or '\n' or '\u0085' or '\u2028' or '\u2029' ? ' ' : c);
        return sb.ToString();
    }

    private static string FirstSentence(string message) => OneLine(message).Trim();

    private static string Shorten(string s, int max = 60) => s.Length <= max ? s : string.Concat(s.AsSpan(0, max), "...");

    // ---------------------------------------------------------------------------------------------------------------
    // Article split
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Splits by article (title), so that no paragraph of an evaluation article is seen in training: the distinct
    /// titles, in order of first appearance, are shuffled with <see cref="Random"/>(<paramref name="seed"/>) (a
    /// Fisher-Yates shuffle written out here, so the result does not depend on the runtime's Shuffle); the first
    /// <paramref name="trainArticles"/> go to train, the rest to eval. Each part keeps the questions' original order.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="trainArticles"/> is not in 1..articles-1.</exception>
    public static (IReadOnlyList<SquadQuestion> Train, IReadOnlyList<SquadQuestion> Eval) SplitArticles(
        IReadOnlyList<SquadQuestion> questions, int trainArticles, int seed)
    {
        ArgumentNullException.ThrowIfNull(questions);
        var titles = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var q in questions)
            if (seen.Add(q.Title)) titles.Add(q.Title);
        if (trainArticles < 1 || trainArticles > titles.Count - 1)
            throw new ArgumentOutOfRangeException(nameof(trainArticles), trainArticles,
                $"the number of training articles must be in 1..{titles.Count - 1} (there are {titles.Count} articles)");

        var order = titles.ToArray();
        var rng = new Random(seed);
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        var train = new HashSet<string>(order.Take(trainArticles), StringComparer.Ordinal);
        return (questions.Where(q => train.Contains(q.Title)).ToArray(), questions.Where(q => !train.Contains(q.Title)).ToArray());
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Windowing
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Hugging Face run_qa's windows (the fast tokenizer with <c>truncation="only_second"</c>, <c>stride</c> and
    /// <c>return_overflowing_tokens</c>): the question is cut to <see cref="SquadOptions.MaxQueryLength"/> tokens; the
    /// context is cut into windows of W = MaxLength - question - 3 tokens starting at 0, W - DocStride, 2(W - DocStride),
    /// ... until a window reaches the end (one window when the context fits). Labels follow prepare_train_features: the
    /// first answer's character span is mapped to the last context token starting at or before its start and the first
    /// context token ending at or after its end; a window that does not wholly contain the span, or an impossible
    /// question, is labelled (0,0), the [CLS] token. (One deliberate difference: HF's start search can run past the last
    /// context token onto the final [SEP] when the answer starts in the window's last token; here it stays in the
    /// context.) Features come in question order, windows in order.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The options leave no room for windows longer than DocStride.</exception>
    public static IReadOnlyList<SquadFeature> Featurize(BertTextTokenizer tokenizer, IReadOnlyList<SquadQuestion> questions,
        SquadOptions options)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(questions);
        ArgumentNullException.ThrowIfNull(options);
        if (options.MaxQueryLength < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxQueryLength, "MaxQueryLength must not be negative");
        if (options.DocStride < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.DocStride, "DocStride must not be negative");
        int minWindow = options.MaxLength - options.MaxQueryLength - 3;
        if (minWindow <= options.DocStride)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxLength,
                $"MaxLength ({options.MaxLength}) - MaxQueryLength ({options.MaxQueryLength}) - 3 special tokens leaves {minWindow} " +
                $"context tokens per window, which must exceed DocStride ({options.DocStride})");

        var features = new List<SquadFeature>();
        string? lastContext = null;
        (int[] Ids, (int Start, int End)[] Offsets) ctx = ([], []);
        for (int qi = 0; qi < questions.Count; qi++)
        {
            var q = questions[qi];
            if (!ReferenceEquals(q.Context, lastContext) && !string.Equals(q.Context, lastContext, StringComparison.Ordinal))
            {
                ctx = tokenizer.Tokenize(q.Context);
                lastContext = q.Context;
            }
            int[] qIds = tokenizer.Tokenize(q.Question.TrimStart()).Ids;
            int qLen = Math.Min(qIds.Length, options.MaxQueryLength);
            int window = options.MaxLength - qLen - 3;
            int step = window - options.DocStride;
            int n = ctx.Ids.Length;

            int startChar = -1, endChar = -1;
            if (!q.IsImpossible && q.Answers.Count > 0)
            {
                startChar = q.Answers[0].Start;
                endChar = startChar + q.Answers[0].Text.Length;
            }

            for (int w = 0, from = 0; ; w++, from += step)
            {
                int to = Math.Min(from + window, n);
                int count = to - from;
                int len = qLen + count + 3;
                var ids = new int[len];
                var types = new int[len];
                var offsets = new (int Start, int End)[len];
                Array.Fill(offsets, (-1, -1));
                ids[0] = tokenizer.ClsId;
                Array.Copy(qIds, 0, ids, 1, qLen);
                ids[qLen + 1] = tokenizer.SepId;
                int c0 = qLen + 2; // first context token
                Array.Copy(ctx.Ids, from, ids, c0, count);
                Array.Copy(ctx.Offsets, from, offsets, c0, count);
                ids[len - 1] = tokenizer.SepId;
                for (int i = c0; i < len; i++) types[i] = 1;

                int sp = NoAnswer, ep = NoAnswer;
                if (startChar >= 0 && count > 0)
                {
                    int c1 = c0 + count - 1; // last context token
                    if (offsets[c0].Start <= startChar && offsets[c1].End >= endChar)
                    {
                        sp = c0;
                        while (sp < c1 && offsets[sp + 1].Start <= startChar) sp++;
                        ep = c1;
                        while (ep > c0 && offsets[ep - 1].End >= endChar) ep--;
                    }
                }
                features.Add(new SquadFeature(qi, w, ids, types, offsets, sp, ep));
                if (to >= n) break;
            }
        }
        return features;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Decoding
    // ---------------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Hugging Face's postprocess_qa_predictions. For each question, over all its windows: the
    /// <see cref="SquadOptions.NBest"/> highest start and end logits (ties: lower index first); spans with both ends in
    /// the context, end &gt;= start and at most <see cref="SquadOptions.MaxAnswerLength"/> tokens score start + end
    /// logit; the best (first on a tie, in window order) gives <c>Context[offsets[start].Start .. offsets[end].End]</c>.
    /// v2.0: the null score is the minimum over windows of the [CLS] start + end logit, and the prediction is "" when
    /// null score - best span score &gt; <see cref="SquadOptions.NullScoreDiffThreshold"/>. A question without any valid
    /// span gets "" (HF writes the placeholder "empty"). Logit arrays may be padded (longer than the feature); padding
    /// positions are never chosen.
    /// </summary>
    /// <returns>Question id → predicted answer text, for every question.</returns>
    public static IReadOnlyDictionary<string, string> Decode(IReadOnlyList<SquadQuestion> questions, IReadOnlyList<SquadFeature> features,
        IReadOnlyList<float[]> startLogits, IReadOnlyList<float[]> endLogits, SquadOptions options)
    {
        var spans = BestSpans(questions, features, startLogits, endLogits, options);
        var result = new Dictionary<string, string>(questions.Count, StringComparer.Ordinal);
        for (int qi = 0; qi < questions.Count; qi++)
        {
            var q = questions[qi];
            string text = spans[qi] is { } span ? q.Context[span.Start..span.End] : "";
            if (options.Version2 && spans[qi] is { } s && s.NullScore - s.Score > options.NullScoreDiffThreshold) text = "";
            result[q.Id] = text;
        }
        return result;
    }

    /// <summary>
    /// The best answer span of each question (see <see cref="Decode"/> for the search), or null where no window has a
    /// valid span: its character range in the context, its score (start + end logit) and the question's null score
    /// (lowest [CLS] start + end logit over its windows).
    /// </summary>
    public static IReadOnlyList<SquadSpan?> BestSpans(IReadOnlyList<SquadQuestion> questions, IReadOnlyList<SquadFeature> features,
        IReadOnlyList<float[]> startLogits, IReadOnlyList<float[]> endLogits, SquadOptions options)
    {
        ArgumentNullException.ThrowIfNull(questions);
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(startLogits);
        ArgumentNullException.ThrowIfNull(endLogits);
        ArgumentNullException.ThrowIfNull(options);
        if (startLogits.Count != features.Count || endLogits.Count != features.Count)
            throw new ArgumentException(
                $"need one start and one end logit row per feature: {features.Count} features, {startLogits.Count} start rows, {endLogits.Count} end rows");
        if (options.NBest < 1) throw new ArgumentOutOfRangeException(nameof(options), options.NBest, "NBest must be at least 1");
        if (options.MaxAnswerLength < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxAnswerLength, "MaxAnswerLength must be at least 1");

        var byQuestion = new List<int>?[questions.Count];
        for (int f = 0; f < features.Count; f++)
        {
            var feature = features[f];
            if ((uint)feature.QuestionIndex >= (uint)questions.Count)
                throw new ArgumentException($"feature {f} refers to question {feature.QuestionIndex}, but there are {questions.Count} questions");
            int len = feature.InputIds.Length;
            if (startLogits[f] is null || endLogits[f] is null || startLogits[f].Length < len || endLogits[f].Length < len)
                throw new ArgumentException(
                    $"feature {f} has {len} tokens but {startLogits[f]?.Length ?? 0} start and {endLogits[f]?.Length ?? 0} end logits");
            (byQuestion[feature.QuestionIndex] ??= []).Add(f);
        }

        var result = new SquadSpan?[questions.Count];
        for (int qi = 0; qi < questions.Count; qi++)
        {
            double best = double.NegativeInfinity, nullScore = double.PositiveInfinity;
            (int Start, int End)? bestSpan = null;
            foreach (int f in byQuestion[qi] ?? [])
            {
                var feature = features[f];
                float[] sl = startLogits[f], el = endLogits[f];
                double featureNull = (double)sl[0] + el[0];
                if (featureNull < nullScore) nullScore = featureNull;
                int[] starts = TopIndices(sl, options.NBest), ends = TopIndices(el, options.NBest);
                foreach (int s in starts)
                {
                    if (!feature.IsContext(s)) continue;
                    foreach (int e in ends)
                    {
                        if (!feature.IsContext(e) || e < s || e - s + 1 > options.MaxAnswerLength) continue;
                        double score = (double)sl[s] + el[e];
                        if (score > best)
                        {
                            best = score;
                            bestSpan = (feature.ContextOffsets[s].Start, feature.ContextOffsets[e].End);
                        }
                    }
                }
            }
            if (bestSpan is { } span) result[qi] = new SquadSpan(span.Start, span.End, best, nullScore);
        }
        return result;
    }

    /// <summary>Indices of the <paramref name="k"/> largest values, largest first, lower index first on ties.</summary>
    private static int[] TopIndices(float[] values, int k)
    {
        var idx = new int[values.Length];
        for (int i = 0; i < idx.Length; i++) idx[i] = i;
        Array.Sort(idx, (a, b) =>
        {
            int c = values[b].CompareTo(values[a]);
            return c != 0 ? c : a.CompareTo(b);
        });
        return idx.Length <= k ? idx : idx[..k];
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Evaluation
    // ---------------------------------------------------------------------------------------------------------------

    private static readonly Regex Articles = new(@"\b(a|an|the)\b", RegexOptions.CultureInvariant | RegexOptions.Compiled);
    private const string Punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"; // Python's string.punctuation

    /// <summary>
    /// The official scripts' normalize_answer: lower-case, remove ASCII punctuation (Python's string.punctuation), replace
    /// the whole words a / an / the with a space, and collapse whitespace to single spaces (trimmed).
    /// </summary>
    public static string NormalizeAnswer(string s)
    {
        ArgumentNullException.ThrowIfNull(s);
        var sb = new StringBuilder(s.Length);
        foreach (char c in s.ToLowerInvariant())
            if (!Punctuation.Contains(c)) sb.Append(c);
        string noArticles = Articles.Replace(sb.ToString(), " ");
        return string.Join(' ', SplitWhitespace(noArticles));
    }

    // Python's str.split(): runs of whitespace (str.isspace, which also counts U+001C..U+001F) separate words.
    private static string[] SplitWhitespace(string s)
    {
        var words = new List<string>();
        int i = 0;
        while (i < s.Length)
        {
            while (i < s.Length && IsPythonSpace(s[i])) i++;
            int start = i;
            while (i < s.Length && !IsPythonSpace(s[i])) i++;
            if (i > start) words.Add(s[start..i]);
        }
        return [.. words];
    }

    private static bool IsPythonSpace(char c) => char.IsWhiteSpace(c) || c is >= '\u001c' and <= '\u001f';

    /// <summary>
    /// The official evaluation: per question, exact match and token F1 of the normalised prediction, each the maximum
    /// over the gold answers, averaged and ×100. A missing prediction scores 0. When no question is impossible (SQuAD
    /// v1.1) this is evaluate-v1.1.py; otherwise evaluate-v2.0.py: gold answers that normalise to "" are dropped, a
    /// question left without gold answers has gold [""], and F1 is 1 when both prediction and gold are empty, 0 when only
    /// one is.
    /// </summary>
    /// <returns>
    /// "exact_match", "f1" and "total" (number of questions); when any question is impossible also "HasAns_exact",
    /// "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total" (a group with no questions is left out).
    /// </returns>
    public static IReadOnlyDictionary<string, double> Evaluate(IReadOnlyList<SquadQuestion> questions,
        IReadOnlyDictionary<string, string> predictions)
    {
        ArgumentNullException.ThrowIfNull(questions);
        ArgumentNullException.ThrowIfNull(predictions);
        bool v2 = questions.Any(q => q.IsImpossible);
        double em = 0, f1 = 0, hasEm = 0, hasF1 = 0, noEm = 0, noF1 = 0;
        int hasCount = 0, noCount = 0;
        foreach (var q in questions)
        {
            double qEm = 0, qF1 = 0;
            if (predictions.TryGetValue(q.Id, out string? pred) && pred is not null)
            {
                IEnumerable<string> golds = q.Answers.Select(a => a.Text);
                if (v2)
                {
                    var kept = golds.Where(g => NormalizeAnswer(g).Length > 0).ToList();
                    golds = kept.Count > 0 ? kept : [""];
                }
                foreach (string gold in golds)
                {
                    qEm = Math.Max(qEm, NormalizeAnswer(gold) == NormalizeAnswer(pred) ? 1 : 0);
                    qF1 = Math.Max(qF1, F1(gold, pred, v2));
                }
            }
            em += qEm; f1 += qF1;
            if (q.Answers.Count > 0) { hasEm += qEm; hasF1 += qF1; hasCount++; }
            else { noEm += qEm; noF1 += qF1; noCount++; }
        }

        int total = questions.Count;
        var result = new Dictionary<string, double>(StringComparer.Ordinal)
        {
            ["exact_match"] = total == 0 ? 0 : 100.0 * em / total,
            ["f1"] = total == 0 ? 0 : 100.0 * f1 / total,
            ["total"] = total,
        };
        if (v2)
        {
            if (hasCount > 0)
            {
                result["HasAns_exact"] = 100.0 * hasEm / hasCount;
                result["HasAns_f1"] = 100.0 * hasF1 / hasCount;
                result["HasAns_total"] = hasCount;
            }
            if (noCount > 0)
            {
                result["NoAns_exact"] = 100.0 * noEm / noCount;
                result["NoAns_f1"] = 100.0 * noF1 / noCount;
                result["NoAns_total"] = noCount;
            }
        }
        return result;
    }

    private static double F1(string gold, string pred, bool v2)
    {
        string[] g = SplitWhitespace(NormalizeAnswer(gold)), p = SplitWhitespace(NormalizeAnswer(pred));
        if (v2 && (g.Length == 0 || p.Length == 0)) return g.Length == p.Length ? 1 : 0;
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string t in g) counts[t] = counts.GetValueOrDefault(t) + 1;
        int same = 0;
        foreach (string t in p)
        {
            if (counts.TryGetValue(t, out int c) && c > 0)
            {
                counts[t] = c - 1;
                same++;
            }
        }
        if (same == 0) return 0;
        double precision = (double)same / p.Length, recall = (double)same / g.Length;
        return 2 * precision * recall / (precision + recall);
    }
}
