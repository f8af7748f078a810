using System.Text;
using System.Text.Json;
using Distillery.Text;

namespace Distillery.Tests;

public class TokenizerTests
{
    // ------------------------------------------------------------------------------------------------------------
    // Reference fixture: Hugging Face tokenizers (Rust core) on bert-base-uncased, truncation 128 longest-first.

    private static readonly Lazy<BertTextTokenizer> BaseUncased =
        new(() => BertTextTokenizer.FromVocab(TestData.Path("tokenizers", "bert-base-uncased", "vocab.txt")));

    private sealed record FixtureItem(int Index, string Task, string TextA, string? TextB, string[] Tokens, int[] Ids,
        int[] TypeIds, (int Start, int End)[] Offsets);

    private static List<FixtureItem> LoadFixture()
    {
        string path = TestData.Path("fixtures", "tokenizer", "bert-base-uncased-sample.json");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var items = new List<FixtureItem>();
        foreach (var item in doc.RootElement.GetProperty("items").EnumerateArray())
        {
            string? textB = item.TryGetProperty("text_b", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString() : null;
            items.Add(new FixtureItem(
                items.Count,
                item.GetProperty("task").GetString()!,
                item.GetProperty("text_a").GetString()!,
                textB,
                item.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray(),
                item.GetProperty("ids").EnumerateArray().Select(t => t.GetInt32()).ToArray(),
                item.GetProperty("type_ids").EnumerateArray().Select(t => t.GetInt32()).ToArray(),
                item.GetProperty("offsets").EnumerateArray().Select(o => (o[0].GetInt32(), o[1].GetInt32())).ToArray()));
        }
        return items;
    }

    /// <summary>Null when equal, otherwise a one-line description of the first difference.</summary>
    private static string? FirstMismatch(FixtureItem expected, TokenizedText actual)
    {
        string Where(int i) =>
            $"item {expected.Index} ({expected.Task}, text_a \"{Short(expected.TextA)}\"): token {i}";
        int n = Math.Min(expected.Ids.Length, actual.InputIds.Length);
        for (int i = 0; i < n; i++)
        {
            if (expected.Tokens[i] != actual.Tokens[i] || expected.Ids[i] != actual.InputIds[i]
                || expected.TypeIds[i] != actual.TokenTypeIds[i] || expected.Offsets[i] != actual.Offsets[i])
            {
                return $"{Where(i)}: expected '{expected.Tokens[i]}' id {expected.Ids[i]} type {expected.TypeIds[i]} offsets {expected.Offsets[i]}, " +
                       $"got '{actual.Tokens[i]}' id {actual.InputIds[i]} type {actual.TokenTypeIds[i]} offsets {actual.Offsets[i]}";
            }
        }
        if (expected.Ids.Length != actual.InputIds.Length || actual.Tokens.Length != actual.InputIds.Length
            || actual.TokenTypeIds.Length != actual.InputIds.Length || actual.Offsets.Length != actual.InputIds.Length)
        {
            return $"{Where(n)}: expected {expected.Ids.Length} tokens, got {actual.InputIds.Length} " +
                   $"(next expected '{expected.Tokens.ElementAtOrDefault(n)}', next got '{actual.Tokens.ElementAtOrDefault(n)}')";
        }
        return null;
    }

    private static string Short(string s) => s.Length <= 60 ? s : s[..57] + "...";

    [Fact]
    public void Fixture_HasAllItems()
    {
        var items = LoadFixture();
        Assert.Equal(62, items.Count);
        Assert.Contains(items, i => i.TextB is not null);
        Assert.Contains(items, i => i.TextB is null);
        Assert.Contains(items, i => i.Ids.Length == 128);   // some items are truncated
    }

    [Fact]
    public void Encode_MatchesHuggingFaceFixture_IdsTypesTokensOffsets()
    {
        var tok = BaseUncased.Value;
        var failures = new List<string>();
        foreach (var item in LoadFixture())
        {
            var actual = tok.Encode(item.TextA, item.TextB, maxLength: 128);
            if (FirstMismatch(item, actual) is string message) failures.Add(message);
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of 62 fixture items differ; first: {failures.FirstOrDefault()}");
    }

    [Fact]
    public void Encode_Fixture_SequenceIdsMarkSpecialTokensAndTexts()
    {
        var tok = BaseUncased.Value;
        foreach (var item in LoadFixture())
        {
            var enc = tok.Encode(item.TextA, item.TextB, maxLength: 128);
            int n = enc.InputIds.Length;
            int firstSep = item.TypeIds.Count(t => t == 0) - 1;
            var expected = new int[n];
            for (int i = 0; i < n; i++) expected[i] = i == 0 || i == firstSep || (item.TextB is not null && i == n - 1) ? -1 : item.TypeIds[i];
            Assert.Equal(expected, enc.SequenceIds);
            Assert.Equal(tok.ClsId, enc.InputIds[0]);
            Assert.Equal(tok.SepId, enc.InputIds[firstSep]);
            Assert.Equal(tok.SepId, enc.InputIds[^1]);
        }
    }

    [Fact]
    public void Encode_Fixture_OffsetsPointIntoOriginalText()
    {
        // "Héllo, wörld! ..." and "naïve café": accents are stripped, so the token text differs from the original slice
        // only by case and accents.
        var tok = BaseUncased.Value;
        const string text = "Héllo, wörld! Unaffable transformers don't tokenize [MASK] easily.";
        var enc = tok.Encode(text);
        for (int i = 1; i < enc.InputIds.Length - 1; i++)
        {
            var (s, e) = enc.Offsets[i];
            string slice = text[s..e];
            string expected = enc.Tokens[i].StartsWith("##", StringComparison.Ordinal) ? enc.Tokens[i][2..] : enc.Tokens[i];
            string folded = slice == "[MASK]" ? slice : slice.ToLowerInvariant().Replace('é', 'e').Replace('ö', 'o');
            Assert.Equal(expected, folded);
        }
    }

    [Fact]
    public void EncodeBatch_Fixture_RowsEqualEncodeAndArePadded()
    {
        var tok = BaseUncased.Value;
        var items = LoadFixture();
        var batch = tok.EncodeBatch(items.Select(i => (i.TextA, i.TextB)).ToList(), maxLength: 128);
        Assert.Equal(items.Count, batch.Count);
        Assert.Equal(items.Max(i => i.Ids.Length), batch.Length);
        for (int r = 0; r < items.Count; r++)
        {
            var item = items[r];
            for (int j = 0; j < batch.Length; j++)
            {
                long id = batch.InputIds[r * batch.Length + j], type = batch.TokenTypeIds[r * batch.Length + j];
                long mask = batch.AttentionMask[r * batch.Length + j];
                if (j < item.Ids.Length)
                {
                    Assert.Equal(item.Ids[j], id);
                    Assert.Equal(item.TypeIds[j], type);
                    Assert.Equal(1, mask);
                }
                else
                {
                    Assert.Equal(tok.PadId, id);
                    Assert.Equal(0, type);
                    Assert.Equal(0, mask);
                }
            }
        }
    }

    [Fact]
    public void BaseUncased_SpecialIdsAndSize()
    {
        var tok = BaseUncased.Value;
        Assert.Equal(30522, tok.VocabSize);
        Assert.Equal((0, 100, 101, 102, 103), (tok.PadId, tok.UnkId, tok.ClsId, tok.SepId, tok.MaskId));
        Assert.True(tok.LowerCase);
        Assert.True(tok.StripAccents);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Tiny inline vocabulary

    private static readonly string[] TinyVocab =
    [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",          // 0-4
        "un", "##aff", "##able", "hello", "world",             // 5-9
        ",", "!", ".", "'", "t", "don",                        // 10-15
        "a", "b", "c", "d", "##a",                             // 16-20
        "中", "ᄒ", "##ᅡ", "##ᆫ", "[", "]",                    // 21-26
    ];

    private static BertTextTokenizer Tiny(TestData.TempDir dir, bool lowerCase = true, string? config = null)
    {
        File.WriteAllText(dir["vocab.txt"], string.Join("\n", TinyVocab) + "\n");
        if (config is null) return BertTextTokenizer.FromVocab(dir["vocab.txt"], lowerCase);
        File.WriteAllText(dir["tokenizer_config.json"], config);
        return BertTextTokenizer.FromDirectory(dir.Dir);
    }

    private static string[] Tokens(BertTextTokenizer tok, string text) =>
        tok.Tokenize(text).Ids.Select(tok.IdToToken).ToArray();

    private static string Letters(int n) => string.Join(" ", Enumerable.Repeat("a", n));

    [Fact]
    public void Tiny_WordPieceSplitsAndUnknownWords()
    {
        using var dir = new TestData.TempDir();
        var tok = Tiny(dir);
        Assert.Equal(TinyVocab.Length, tok.VocabSize);
        Assert.Equal(["un", "##aff", "##able"], Tokens(tok, "unaffable"));
        Assert.Equal(["a", "##a", "##a"], Tokens(tok, "aaa"));

        var (ids, offsets) = tok.Tokenize("hello xyz unaffablex");
        Assert.Equal([8, tok.UnkId, tok.UnkId], ids);                 // a word with any missing piece is one [UNK]
        Assert.Equal([(0, 5), (6, 9), (10, 20)], offsets);

        Assert.Equal([tok.UnkId], tok.Tokenize(new string('a', 101)).Ids);   // longer than 100 characters
        Assert.Equal(101, tok.Tokenize(Letters(101)).Ids.Length);
        Assert.Empty(tok.Tokenize("").Ids);
        Assert.Empty(tok.Tokenize(" \t\n ").Ids);
    }

    [Fact]
    public void Tiny_NormalisationKeepsOriginalOffsets()
    {
        using var dir = new TestData.TempDir();
        var tok = Tiny(dir);

        var (ids, offsets) = tok.Tokenize("HÉLLO, Wörld!");
        Assert.Equal([8, 10, 9, 11], ids);
        Assert.Equal([(0, 5), (5, 6), (7, 12), (12, 13)], offsets);

        // decomposed accent (e + U+0301): the mark is removed but the word still ends after it
        (ids, offsets) = tok.Tokenize("He\u0301llo world");
        Assert.Equal([8, 9], ids);
        Assert.Equal([(0, 6), (7, 12)], offsets);

        // tab / newline are whitespace (not deleted), format characters (zero-width space) and controls are removed
        (ids, offsets) = tok.Tokenize("hello\tworld\nhel\u200Blo\u0007!");
        Assert.Equal([8, 9, 8, 11], ids);
        Assert.Equal([(0, 5), (6, 11), (12, 18), (19, 20)], offsets);

        // CJK ideographs become words of their own; Hangul syllables are decomposed into jamo (NFD)
        (ids, offsets) = tok.Tokenize("a中b 한");
        Assert.Equal(["a", "中", "b", "ᄒ", "##ᅡ", "##ᆫ"], ids.Select(tok.IdToToken));
        Assert.Equal([(0, 1), (1, 2), (2, 3), (4, 5), (4, 5), (4, 5)], offsets);

        // punctuation is split off, including non-ASCII punctuation
        Assert.Equal(["don", "'", "t", "."], Tokens(tok, "don't."));
        Assert.Equal(["a", "[UNK]", "b"], Tokens(tok, "a—b"));
    }

    [Fact]
    public void Tiny_LiteralSpecialTokensStayWhole()
    {
        using var dir = new TestData.TempDir();
        var tok = Tiny(dir);
        var (ids, offsets) = tok.Tokenize("a [MASK] b[SEP]c");
        Assert.Equal([16, tok.MaskId, 17, tok.SepId, 18], ids);
        Assert.Equal([(0, 1), (2, 8), (9, 10), (10, 15), (15, 16)], offsets);

        // matched case-sensitively before lower-casing, as HF's added tokens (normalized=false)
        Assert.Equal(["[", "[UNK]", "]"], Tokens(tok, "[mask]"));

        var enc = tok.Encode("[MASK] a");
        Assert.Equal([tok.ClsId, tok.MaskId, 16, tok.SepId], enc.InputIds);
        Assert.Equal([-1, 0, 0, -1], enc.SequenceIds);
    }

    [Fact]
    public void Tiny_CasedAndConfigOptions()
    {
        using (var dir = new TestData.TempDir())
        {
            var cased = Tiny(dir, lowerCase: false);
            Assert.False(cased.LowerCase);
            Assert.False(cased.StripAccents);
            Assert.Equal(["[UNK]", "hello"], Tokens(cased, "Hello hello"));
            Assert.Equal(["[UNK]"], Tokens(cased, "héllo"));
        }
        using (var dir = new TestData.TempDir())
        {
            var tok = Tiny(dir, config: """{ "do_lower_case": true, "strip_accents": false, "model_max_length": 64 }""");
            Assert.True(tok.LowerCase);
            Assert.False(tok.StripAccents);
            Assert.Equal(64, tok.ModelMaxLength);
            Assert.Equal(["hello", "[UNK]"], Tokens(tok, "HELLO héllo"));
        }
        using (var dir = new TestData.TempDir())
        {
            var tok = Tiny(dir, config: """{ "do_lower_case": false, "tokenize_chinese_chars": false }""");
            Assert.False(tok.LowerCase);
            Assert.False(tok.TokenizeChineseChars);
            Assert.Equal(["[UNK]"], Tokens(tok, "a中b"));
            Assert.Equal(512, tok.ModelMaxLength);
        }
    }

    [Fact]
    public void Tiny_EncodePairLayoutAndTypeIds()
    {
        using var dir = new TestData.TempDir();
        var tok = Tiny(dir);
        var enc = tok.Encode("hello world", "a b");
        Assert.Equal(["[CLS]", "hello", "world", "[SEP]", "a", "b", "[SEP]"], enc.Tokens);
        Assert.Equal([2, 8, 9, 3, 16, 17, 3], enc.InputIds);
        Assert.Equal([0, 0, 0, 0, 1, 1, 1], enc.TokenTypeIds);
        Assert.Equal([-1, 0, 0, -1, 1, 1, -1], enc.SequenceIds);
        Assert.Equal([(0, 0), (0, 5), (6, 11), (0, 0), (0, 1), (2, 3), (0, 0)], enc.Offsets);

        var empty = tok.Encode("", "");
        Assert.Equal([2, 3, 3], empty.InputIds);
        Assert.Equal([0, 0, 1], empty.TokenTypeIds);
    }

    // Hugging Face tokenizers' own truncate_encodings_longest_first table (budget 7 = maxLength 10 minus 3 specials).
    [Theory]
    [InlineData(0, 0, 0, 0)] [InlineData(0, 2, 0, 2)] [InlineData(0, 4, 0, 4)] [InlineData(0, 8, 0, 7)]
    [InlineData(2, 0, 2, 0)] [InlineData(2, 2, 2, 2)] [InlineData(2, 4, 2, 4)] [InlineData(2, 8, 2, 5)]
    [InlineData(4, 0, 4, 0)] [InlineData(4, 2, 4, 2)] [InlineData(4, 4, 3, 4)] [InlineData(4, 8, 3, 4)]
    [InlineData(8, 0, 7, 0)] [InlineData(8, 2, 5, 2)] [InlineData(8, 4, 4, 3)] [InlineData(8, 8, 3, 4)]
    public void Tiny_LongestFirstTruncationMatchesHuggingFace(int n1, int n2, int keep1, int keep2)
    {
        using var dir = new TestData.TempDir();
        var tok = Tiny(dir);
        var enc = tok.Encode(Letters(n1), Letters(n2), maxLength: 10);
        Assert.Equal(keep1, enc.SequenceIds.Count(s => s == 0));
        Assert.Equal(keep2, enc.SequenceIds.Count(s => s == 1));
        Assert.Equal(keep1 + keep2 + 3, enc.InputIds.Length);
        // truncation keeps the start of each text
        Assert.Equal(Enumerable.Range(0, keep1).Select(i => (2 * i, 2 * i + 1)), enc.Offsets.Where((_, i) => enc.SequenceIds[i] == 0));
        Assert.Equal(Enumerable.Range(0, keep2).Select(i => (2 * i, 2 * i + 1)), enc.Offsets.Where((_, i) => enc.SequenceIds[i] == 1));
    }

    [Fact]
    public void Tiny_LongestFirstSeesLengthsAsHuggingFaceDoes()
    {
        // HF tokenizers 0.23 stops tokenising a sequence after the first whole word that reaches maxLength tokens, so a
        // sequence of 3-piece words counts as 12 (not its full 12+) against 10 for single-piece words: the first text is
        // "longer" and keeps the odd token. Checked against tokenizers 0.23.2 (npm) on bert-base-uncased, where
        // "unaffable" is also three pieces: [CLS] una ##ffa ##ble una [SEP] a a a [SEP].
        using var dir = new TestData.TempDir();
        var tok = Tiny(dir);
        string words = string.Join(" ", Enumerable.Repeat("unaffable", 4));
        var enc = tok.Encode(words, Letters(12), maxLength: 10);
        Assert.Equal(["[CLS]", "un", "##aff", "##able", "un", "[SEP]", "a", "a", "a", "[SEP]"], enc.Tokens);
        enc = tok.Encode(Letters(12), words, maxLength: 10);
        Assert.Equal(["[CLS]", "a", "a", "a", "[SEP]", "un", "##aff", "##able", "un", "[SEP]"], enc.Tokens);
        enc = tok.Encode(words, words, maxLength: 10);
        Assert.Equal(["[CLS]", "un", "##aff", "##able", "[SEP]", "un", "##aff", "##able", "un", "[SEP]"], enc.Tokens);
    }

    [Fact]
    public void Tiny_OtherTruncationStrategies()
    {
        using var dir = new TestData.TempDir();
        var tok = Tiny(dir);

        var single = tok.Encode(Letters(10), maxLength: 6);
        Assert.Equal(6, single.InputIds.Length);
        Assert.Equal(tok.SepId, single.InputIds[^1]);
        Assert.Equal(6, tok.Encode(Letters(10), maxLength: 6, truncation: TruncationStrategy.OnlyFirst).InputIds.Length);

        var onlyFirst = tok.Encode(Letters(8), Letters(2), maxLength: 10, truncation: TruncationStrategy.OnlyFirst);
        Assert.Equal((5, 2), (onlyFirst.SequenceIds.Count(s => s == 0), onlyFirst.SequenceIds.Count(s => s == 1)));
        var onlySecond = tok.Encode(Letters(2), Letters(8), maxLength: 10, truncation: TruncationStrategy.OnlySecond);
        Assert.Equal((2, 5), (onlySecond.SequenceIds.Count(s => s == 0), onlySecond.SequenceIds.Count(s => s == 1)));

        // the named sequence is too short to absorb the cut
        Assert.Throws<ArgumentException>(() => tok.Encode(Letters(2), Letters(8), maxLength: 10, truncation: TruncationStrategy.OnlyFirst));
        Assert.Throws<ArgumentException>(() => tok.Encode(Letters(10), maxLength: 6, truncation: TruncationStrategy.OnlySecond));
        // no truncation needed: any strategy is fine
        Assert.Equal(4, tok.Encode(Letters(2), maxLength: 6, truncation: TruncationStrategy.OnlySecond).InputIds.Length);

        // None: throws only when too long
        Assert.Equal(12, tok.Encode(Letters(10), maxLength: 12, truncation: TruncationStrategy.None).InputIds.Length);
        Assert.Throws<ArgumentException>(() => tok.Encode(Letters(10), maxLength: 11, truncation: TruncationStrategy.None));
        Assert.Throws<ArgumentException>(() => tok.Encode("a", Letters(9), maxLength: 12, truncation: TruncationStrategy.None));

        // maxLength below the special tokens
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Encode("a", "b", maxLength: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Encode("a", maxLength: 1));
        Assert.Equal([2, 3, 3], tok.Encode(Letters(5), Letters(5), maxLength: 3).InputIds);
        Assert.Equal([2, 3], tok.Encode(Letters(5), maxLength: 2).InputIds);
    }

    [Fact]
    public void Tiny_EncodeBatchPaddingAndAttentionMask()
    {
        using var dir = new TestData.TempDir();
        var tok = Tiny(dir);
        var texts = new List<(string, string?)> { ("hello world", null), ("a", "b c") };

        var longest = tok.EncodeBatch(texts);
        Assert.Equal((2, 6), (longest.Count, longest.Length));
        Assert.Equal([2L, 8, 9, 3, 0, 0, /**/ 2, 16, 3, 17, 18, 3], longest.InputIds);
        Assert.Equal([0L, 0, 0, 0, 0, 0, /**/ 0, 0, 0, 1, 1, 1], longest.TokenTypeIds);
        Assert.Equal([1L, 1, 1, 1, 0, 0, /**/ 1, 1, 1, 1, 1, 1], longest.AttentionMask);

        var fixedLength = tok.EncodeBatch(texts, maxLength: 8, padding: PaddingStrategy.MaxLength);
        Assert.Equal(8, fixedLength.Length);
        Assert.Equal(16, fixedLength.InputIds.Length);
        Assert.Equal([2L, 16, 3, 17, 18, 3, 0, 0], fixedLength.InputIds[8..]);
        Assert.Equal([1L, 1, 1, 1, 1, 1, 0, 0], fixedLength.AttentionMask[8..]);

        var truncated = tok.EncodeBatch(texts, maxLength: 5, padding: PaddingStrategy.MaxLength);
        Assert.Equal([2L, 8, 9, 3, 0, /**/ 2, 16, 3, 17, 3], truncated.InputIds);

        Assert.Throws<ArgumentException>(() => tok.EncodeBatch(texts, padding: PaddingStrategy.None));
        var same = tok.EncodeBatch([("a b", null), ("c d", null)], padding: PaddingStrategy.None);
        Assert.Equal((2, 4), (same.Count, same.Length));
        Assert.All(same.AttentionMask, m => Assert.Equal(1, m));

        var none = tok.EncodeBatch([]);
        Assert.Equal((0, 0), (none.Count, none.Length));
    }

    [Fact]
    public void Tiny_DecodeAndIdLookups()
    {
        using var dir = new TestData.TempDir();
        var tok = Tiny(dir);
        int[] ids = [2, 5, 6, 7, 10, 8, 11, 15, 13, 14, 4, 3, 0];
        Assert.Equal("unaffable, hello! don ' t", tok.Decode(ids));
        Assert.Equal("[CLS] unaffable, hello! don ' t [MASK] [SEP] [PAD]", tok.Decode(ids, skipSpecialTokens: false));
        Assert.Equal("##aff a", tok.Decode([6, 16]));
        Assert.Equal("", tok.Decode([]));
        Assert.Equal("hello world", tok.Decode(tok.Encode("Hello World").InputIds));

        Assert.Equal("hello", tok.IdToToken(8));
        Assert.Equal(8, tok.TokenToId("hello"));
        Assert.Equal(tok.UnkId, tok.TokenToId("nope"));
        Assert.Equal(tok.UnkId, tok.TokenToId("Hello"));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.IdToToken(TinyVocab.Length));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.IdToToken(-1));
    }

    [Fact]
    public void BadVocab_DuplicateToken_InvalidData()
    {
        using var dir = new TestData.TempDir();
        File.WriteAllLines(dir["vocab.txt"], [.. TinyVocab, "hello"]);
        var ex = Assert.Throws<InvalidDataException>(() => BertTextTokenizer.FromVocab(dir["vocab.txt"]));
        Assert.Contains(dir["vocab.txt"], ex.Message);
        Assert.Contains("duplicate token 'hello'", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void BadVocab_MissingSpecialToken_InvalidData()
    {
        using var dir = new TestData.TempDir();
        File.WriteAllLines(dir["vocab.txt"], TinyVocab.Where(t => t != "[MASK]"));
        var ex = Assert.Throws<InvalidDataException>(() => BertTextTokenizer.FromDirectory(dir.Dir));
        Assert.Contains(dir["vocab.txt"], ex.Message);
        Assert.Contains("[MASK]", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);

        File.WriteAllLines(dir["vocab.txt"], TinyVocab.Where(t => t is not ("[PAD]" or "[UNK]")));
        ex = Assert.Throws<InvalidDataException>(() => BertTextTokenizer.FromVocab(dir["vocab.txt"]));
        Assert.Contains("[PAD], [UNK]", ex.Message);
    }

    [Fact]
    public void BadFolder_MissingVocab_FileNotFound()
    {
        using var dir = new TestData.TempDir();
        var ex = Assert.Throws<FileNotFoundException>(() => BertTextTokenizer.FromDirectory(dir.Dir));
        Assert.Contains("vocab.txt missing", ex.Message);
        Assert.Throws<FileNotFoundException>(() => BertTextTokenizer.FromVocab(dir["vocab.txt"]));

        File.WriteAllLines(dir["vocab.txt"], TinyVocab);
        File.WriteAllText(dir["tokenizer_config.json"], "{ not json");
        var bad = Assert.Throws<InvalidDataException>(() => BertTextTokenizer.FromDirectory(dir.Dir));
        Assert.Contains("tokenizer_config.json", bad.Message);
    }

    // ------------------------------------------------------------------------------------------------------------
    // SaveTo -> FromDirectory

    [Fact]
    public void SaveTo_FromDirectory_RoundTripsBaseUncased()
    {
        var tok = BaseUncased.Value;
        using var dir = new TestData.TempDir();
        tok.SaveTo(dir.Dir);

        Assert.Equal(File.ReadAllLines(TestData.Path("tokenizers", "bert-base-uncased", "vocab.txt")),
                     File.ReadAllLines(dir["vocab.txt"]));
        using (var config = JsonDocument.Parse(File.ReadAllText(dir["tokenizer_config.json"])))
        {
            var root = config.RootElement;
            Assert.Equal("BertTokenizer", root.GetProperty("tokenizer_class").GetString());
            Assert.True(root.GetProperty("do_lower_case").GetBoolean());
            Assert.Equal(512, root.GetProperty("model_max_length").GetInt32());
            Assert.Equal("[UNK]", root.GetProperty("unk_token").GetString());
            Assert.Equal("[SEP]", root.GetProperty("sep_token").GetString());
            Assert.Equal("[PAD]", root.GetProperty("pad_token").GetString());
            Assert.Equal("[CLS]", root.GetProperty("cls_token").GetString());
            Assert.Equal("[MASK]", root.GetProperty("mask_token").GetString());
        }
        Assert.True(File.Exists(dir["special_tokens_map.json"]));

        var back = BertTextTokenizer.FromDirectory(dir.Dir);
        Assert.Equal((tok.VocabSize, tok.LowerCase, tok.StripAccents, tok.ModelMaxLength),
                     (back.VocabSize, back.LowerCase, back.StripAccents, back.ModelMaxLength));
        Assert.Equal((tok.PadId, tok.UnkId, tok.ClsId, tok.SepId, tok.MaskId), (back.PadId, back.UnkId, back.ClsId, back.SepId, back.MaskId));
        foreach (var item in LoadFixture().Take(10))
        {
            var a = tok.Encode(item.TextA, item.TextB, 128);
            var b = back.Encode(item.TextA, item.TextB, 128);
            Assert.Equal(a.InputIds, b.InputIds);
            Assert.Equal(a.Offsets, b.Offsets);
        }
    }

    [Fact]
    public void SaveTo_FromDirectory_KeepsCasedSettingsAndSharedConfig()
    {
        using var src = new TestData.TempDir();
        var tok = Tiny(src, config: """{ "do_lower_case": false, "strip_accents": true, "model_max_length": 128 }""");
        Assert.Equal(["[UNK]", "hello"], Tokens(tok, "Héllo héllo"));
        using var dir = new TestData.TempDir();
        tok.SaveTo(dir.Dir);
        var back = BertTextTokenizer.FromDirectory(dir.Dir);
        Assert.Equal((false, true, true, 128), (back.LowerCase, back.StripAccents, back.TokenizeChineseChars, back.ModelMaxLength));
        Assert.Equal(TinyVocab, Enumerable.Range(0, back.VocabSize).Select(back.IdToToken));
        Assert.Equal(Tokens(tok, "Héllo héllo"), Tokens(back, "Héllo héllo"));

        // the shared folder's own tokenizer_config.json (HF format, model_max_length 256) loads too
        var shared = BertTextTokenizer.FromDirectory(TestData.Path("tokenizers", "bert-base-uncased"));
        Assert.Equal(256, shared.ModelMaxLength);
        Assert.True(shared.LowerCase);
        Assert.Equal(Encoding.UTF8.GetString(File.ReadAllBytes(dir["vocab.txt"])).Split('\n')[..TinyVocab.Length], TinyVocab);
    }
}
