using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Distillery.Text;

/// <summary>How <see cref="BertTextTokenizer.Encode"/> shortens inputs that are longer than the maximum length.</summary>
public enum TruncationStrategy
{
    /// <summary>
    /// Hugging Face's <c>longest_first</c> as the fast (Rust) tokenizer does it: with budget T = maxLength - specials and
    /// lengths n1 &lt;= n2, keep the shorter whole and cut the longer to T - n1 when that leaves it at least n1 long,
    /// otherwise cut both to T/2, the longer keeping the odd token (on a tie, the second text). As in tokenizers 0.23,
    /// "length" here stops after the first whole word that reaches maxLength tokens. (The slow Python tokenizer removes
    /// one token at a time and differs by one token in some odd-budget cases.)
    /// </summary>
    LongestFirst,
    /// <summary>Shorten only the first text; fails when that is not enough.</summary>
    OnlyFirst,
    /// <summary>Shorten only the second text of a pair; fails when that is not enough or there is no second text.</summary>
    OnlySecond,
    /// <summary>Never shorten: an input that does not fit throws.</summary>
    None,
}

/// <summary>How <see cref="BertTextTokenizer.EncodeBatch"/> makes the rows of a batch equally long.</summary>
public enum PaddingStrategy
{
    /// <summary>No padding: all rows must already have the same length.</summary>
    None,
    /// <summary>Pad to the longest row of the batch.</summary>
    Longest,
    /// <summary>Pad every row to the maximum length.</summary>
    MaxLength,
}

/// <summary>
/// One encoded example (no padding). Offsets are [start,end) offsets into the ORIGINAL text_a or text_b string, (0,0) for
/// special tokens, as Hugging Face's fast tokenizer reports them, except that they count UTF-16 units (C# string
/// indices, so <c>text[start..end]</c> is the token's source) where HF counts code points: the two differ only after a
/// character outside the Basic Multilingual Plane (emoji, math letters). SequenceIds: 0 for text_a tokens, 1 for
/// text_b tokens, -1 for special tokens.
/// </summary>
public sealed record TokenizedText(int[] InputIds, int[] TokenTypeIds, string[] Tokens, (int Start, int End)[] Offsets, int[] SequenceIds)
{
    /// <summary>Number of tokens, special tokens included.</summary>
    public int Length => InputIds.Length;
}

/// <summary>A padded batch: row-major flattened arrays of shape [Count, Length].</summary>
public sealed record TokenizedBatch(int Count, int Length, long[] InputIds, long[] TokenTypeIds, long[] AttentionMask);

/// <summary>
/// BERT WordPiece tokenizer with Hugging Face semantics (the fast/Rust <c>BertNormalizer</c> + <c>BertPreTokenizer</c> +
/// <c>WordPiece</c> + BERT template), built on Microsoft.ML.Tokenizers' <see cref="BertTokenizer"/>.
/// </summary>
/// <remarks>
/// The WordPiece step (vocabulary lookup, greedy longest-match-first, whole word to [UNK] when a piece is missing) is the
/// library's. What this class adds, because the library (2.0.1) lacks it or differs from Hugging Face:
/// <list type="bullet">
/// <item>Offsets into the original text. The library reports offsets into its normalised text, which differs in length
/// whenever characters are removed, decomposed or padded with spaces; here every normalised character carries the
/// original range it came from.</item>
/// <item>Hugging Face's normaliser: tab/newline/CR become spaces (the library deletes them, gluing words together), all
/// Unicode "other" characters (Cc, Cf, Co, Cs, Cn) are removed (the library removes only Cc), accents are stripped by
/// canonical decomposition per character (the library recomposes with NFC afterwards, which HF does not), and
/// strip_accents follows do_lower_case by default as in HF. (Decomposition needs ICU: <see cref="string.Normalize(NormalizationForm)"/>
/// does nothing under InvariantGlobalization, so the project must not turn that on.)</item>
/// <item>Hugging Face's pre-tokeniser: ASCII symbols such as $ + &lt; = &gt; ^ ` | ~ are split off as words of their own
/// (the library's pre-tokeniser drops them from the text altogether).</item>
/// <item>Special tokens written literally in the text are matched case-sensitively on the original text, before
/// normalisation (HF's added tokens with normalized=false); the library matches them after lower-casing.</item>
/// <item>Pairs, token type ids, HF's longest-first truncation, padding, HF's WordPiece decoder, and saving a folder that
/// Hugging Face transformers loads.</item>
/// </list>
/// Thread-safe: instances are immutable.
/// </remarks>
public sealed class BertTextTokenizer
{
    /// <summary>Words with more Unicode scalar values than this become a single [UNK] (HF's max_input_chars_per_word).</summary>
    public const int MaxInputCharsPerWord = 100;

    private const string SubwordPrefix = "##";

    private readonly BertTokenizer _wordPiece;
    private readonly string[] _vocab;
    private readonly Dictionary<string, int> _tokenToId;
    private readonly string[] _specialTokens;          // matched literally in the original text
    private readonly int[] _specialTokenIds;
    private readonly HashSet<int> _specialIds;
    private readonly bool? _stripAccentsSetting;

    private BertTextTokenizer(string vocabPath, byte[] vocabBytes, bool lowerCase, bool? stripAccents, bool tokenizeChineseChars,
        int modelMaxLength, SpecialTokenNames names)
    {
        (_vocab, _tokenToId) = ReadVocab(vocabPath, vocabBytes);
        Fingerprint = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(
            [.. vocabBytes, .. Encoding.UTF8.GetBytes($"|{lowerCase}|{stripAccents ?? lowerCase}|{tokenizeChineseChars}|{string.Join(",", names.All)}")]))[..16];

        var missing = names.All.Where(t => !_tokenToId.ContainsKey(t)).ToArray();
        if (missing.Length > 0)
            throw new InvalidDataException($"{vocabPath}: vocabulary lacks the special token(s) {string.Join(", ", missing)}");

        LowerCase = lowerCase;
        _stripAccentsSetting = stripAccents;
        StripAccents = stripAccents ?? lowerCase;
        TokenizeChineseChars = tokenizeChineseChars;
        ModelMaxLength = modelMaxLength;
        PadToken = names.Pad; UnkToken = names.Unk; ClsToken = names.Cls; SepToken = names.Sep; MaskToken = names.Mask;
        PadId = _tokenToId[names.Pad]; UnkId = _tokenToId[names.Unk]; ClsId = _tokenToId[names.Cls];
        SepId = _tokenToId[names.Sep]; MaskId = _tokenToId[names.Mask];
        _specialTokens = names.All.Distinct(StringComparer.Ordinal).ToArray();
        _specialTokenIds = _specialTokens.Select(t => _tokenToId[t]).ToArray();
        _specialIds = [.. _specialTokenIds];

        // Normalisation and pre-tokenisation are done here (with offset tracking); the library only runs WordPiece on
        // single words. Its own word-length limit counts UTF-16 units, so it is raised and HF's limit (counted in Unicode
        // scalar values) is applied here instead.
        _wordPiece = BertTokenizer.Create(new MemoryStream(vocabBytes, writable: false), new BertOptions
        {
            ApplyBasicTokenization = false,
            LowerCaseBeforeTokenization = lowerCase,
            SplitOnSpecialTokens = false,
            UnknownToken = names.Unk,
            SeparatorToken = names.Sep,
            PaddingToken = names.Pad,
            ClassificationToken = names.Cls,
            MaskingToken = names.Mask,
            ContinuingSubwordPrefix = SubwordPrefix,
            MaxInputCharsPerWord = 2 * MaxInputCharsPerWord,
        });
    }

    /// <summary>Number of entries in the vocabulary (lines of vocab.txt).</summary>
    public int VocabSize => _vocab.Length;
    /// <summary>A hash of the vocabulary and normalisation settings: equal fingerprints tokenise identically (cache keys).</summary>
    public string Fingerprint { get; }
    /// <summary>Whether token <paramref name="id"/> continues a word (WordPiece "##" prefix); whole-word masking groups on it.</summary>
    public bool IsContinuation(int id) => id >= 0 && id < _vocab.Length && _vocab[id].StartsWith(SubwordPrefix, StringComparison.Ordinal);
    /// <summary>Whether <paramref name="id"/> is one of the special tokens ([PAD], [UNK], [CLS], [SEP], [MASK]).</summary>
    public bool IsSpecial(int id) => _specialIds.Contains(id);
    /// <summary>Id of [PAD].</summary>
    public int PadId { get; }
    /// <summary>Id of [UNK].</summary>
    public int UnkId { get; }
    /// <summary>Id of [CLS].</summary>
    public int ClsId { get; }
    /// <summary>Id of [SEP].</summary>
    public int SepId { get; }
    /// <summary>Id of [MASK].</summary>
    public int MaskId { get; }
    /// <summary>Whether text is lower-cased (do_lower_case).</summary>
    public bool LowerCase { get; }
    /// <summary>Whether accents are stripped (strip_accents; when not set it follows <see cref="LowerCase"/>).</summary>
    public bool StripAccents { get; }
    /// <summary>Whether CJK ideographs become words of their own (tokenize_chinese_chars).</summary>
    public bool TokenizeChineseChars { get; }
    /// <summary>model_max_length from tokenizer_config.json (512 when absent).</summary>
    public int ModelMaxLength { get; }
    /// <summary>The padding token text.</summary>
    public string PadToken { get; }
    /// <summary>The unknown token text.</summary>
    public string UnkToken { get; }
    /// <summary>The classifier token text.</summary>
    public string ClsToken { get; }
    /// <summary>The separator token text.</summary>
    public string SepToken { get; }
    /// <summary>The mask token text.</summary>
    public string MaskToken { get; }

    /// <summary>
    /// Loads a Hugging Face tokenizer folder: dir/vocab.txt (required) and dir/tokenizer_config.json (optional:
    /// do_lower_case (default true), strip_accents, tokenize_chinese_chars, model_max_length and the special token names).
    /// </summary>
    public static BertTextTokenizer FromDirectory(string dir)
    {
        ArgumentNullException.ThrowIfNull(dir);
        string vocabPath = Path.Combine(dir, "vocab.txt");
        if (!File.Exists(vocabPath)) throw new FileNotFoundException($"{dir}: vocab.txt missing", vocabPath);

        bool lowerCase = true, chinese = true;
        bool? strip = null;
        int modelMaxLength = DefaultModelMaxLength;
        var names = SpecialTokenNames.Default;
        string configPath = Path.Combine(dir, "tokenizer_config.json");
        if (File.Exists(configPath))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(configPath),
                    new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{configPath}: not a JSON object");
                lowerCase = GetBool(root, "do_lower_case") ?? true;
                chinese = GetBool(root, "tokenize_chinese_chars") ?? true;
                strip = GetBool(root, "strip_accents");
                if (root.TryGetProperty("model_max_length", out var mml) && mml.ValueKind == JsonValueKind.Number)
                    modelMaxLength = (int)Math.Clamp(mml.GetDouble(), 1, int.MaxValue);
                names = new SpecialTokenNames(
                    GetTokenName(root, "pad_token") ?? names.Pad, GetTokenName(root, "unk_token") ?? names.Unk,
                    GetTokenName(root, "cls_token") ?? names.Cls, GetTokenName(root, "sep_token") ?? names.Sep,
                    GetTokenName(root, "mask_token") ?? names.Mask);
            }
            catch (Exception ex) when (ex is JsonException or InvalidOperationException)
            {
                throw new InvalidDataException($"{configPath}: {ex.Message}", ex);
            }
        }
        return new BertTextTokenizer(vocabPath, File.ReadAllBytes(vocabPath), lowerCase, strip, chinese, modelMaxLength, names);
    }

    /// <summary>Loads a WordPiece vocabulary (one token per line, id = line number) with the default BERT special tokens.</summary>
    public static BertTextTokenizer FromVocab(string vocabPath, bool lowerCase = true)
    {
        ArgumentNullException.ThrowIfNull(vocabPath);
        if (!File.Exists(vocabPath)) throw new FileNotFoundException($"{vocabPath}: vocabulary file missing", vocabPath);
        return new BertTextTokenizer(vocabPath, File.ReadAllBytes(vocabPath), lowerCase, null, true, DefaultModelMaxLength,
            SpecialTokenNames.Default);
    }

    /// <summary>Word pieces of one text without special tokens, with [start,end) offsets into <paramref name="text"/>.</summary>
    public (int[] Ids, (int Start, int End)[] Offsets) Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var pieces = new Pieces();
        TokenizeInto(text, pieces);
        return (pieces.Ids.ToArray(), pieces.Offsets.ToArray());
    }

    /// <summary>
    /// Encodes one text or a pair as Hugging Face does: <c>[CLS] A [SEP]</c> or <c>[CLS] A [SEP] B [SEP]</c>, token
    /// type 0 up to and including the first [SEP], 1 after it; truncated to <paramref name="maxLength"/> tokens (special
    /// tokens included) with <paramref name="truncation"/>. No padding.
    /// </summary>
    public TokenizedText Encode(string textA, string? textB = null, int maxLength = 512,
        TruncationStrategy truncation = TruncationStrategy.LongestFirst)
    {
        ArgumentNullException.ThrowIfNull(textA);
        bool pair = textB is not null;
        int added = pair ? 3 : 2;
        if (maxLength < added)
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength,
                $"maxLength must be at least {added} for {(pair ? "a text pair" : "a single text")} (the special tokens alone need {added})");

        var a = new Pieces();
        TokenizeInto(textA, a);
        Pieces? b = null;
        if (pair)
        {
            b = new Pieces();
            TokenizeInto(textB!, b);
        }

        (int na, int nb) = TruncatedLengths(a.LengthSeenByTruncation(maxLength), b?.LengthSeenByTruncation(maxLength) ?? 0,
            pair, maxLength - added, truncation);

        int n = na + nb + added;
        var ids = new int[n];
        var types = new int[n];
        var tokens = new string[n];
        var offsets = new (int Start, int End)[n];
        var seq = new int[n];
        int k = 0;
        void Special(int id, string token, int type) { ids[k] = id; tokens[k] = token; types[k] = type; seq[k] = -1; k++; }
        void Copy(Pieces p, int count, int type)
        {
            for (int i = 0; i < count; i++, k++)
            {
                ids[k] = p.Ids[i]; tokens[k] = p.Tokens[i]; offsets[k] = p.Offsets[i]; types[k] = type; seq[k] = type;
            }
        }
        Special(ClsId, ClsToken, 0);
        Copy(a, na, 0);
        Special(SepId, SepToken, 0);
        if (b is not null)
        {
            Copy(b, nb, 1);
            Special(SepId, SepToken, 1);
        }
        return new TokenizedText(ids, types, tokens, offsets, seq);
    }

    /// <summary>
    /// Encodes a batch (see <see cref="Encode"/>) and pads it on the right with [PAD] (token type 0, attention 0).
    /// <see cref="PaddingStrategy.None"/> requires all rows to come out equally long.
    /// </summary>
    public TokenizedBatch EncodeBatch(IReadOnlyList<(string A, string? B)> texts, int maxLength = 512,
        PaddingStrategy padding = PaddingStrategy.Longest, TruncationStrategy truncation = TruncationStrategy.LongestFirst)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var rows = new TokenizedText[texts.Count];
        for (int i = 0; i < rows.Length; i++) rows[i] = Encode(texts[i].A, texts[i].B, maxLength, truncation);

        int longest = rows.Length == 0 ? 0 : rows.Max(r => r.InputIds.Length);
        int length = padding switch
        {
            PaddingStrategy.MaxLength => maxLength,
            PaddingStrategy.Longest => longest,
            PaddingStrategy.None => rows.Any(r => r.InputIds.Length != longest)
                ? throw new ArgumentException(
                    $"PaddingStrategy.None needs rows of equal length, got lengths {rows.Min(r => r.InputIds.Length)} to {longest}", nameof(padding))
                : longest,
            _ => throw new ArgumentOutOfRangeException(nameof(padding), padding, "unknown padding strategy"),
        };

        var inputIds = new long[rows.Length * length];
        var typeIds = new long[rows.Length * length];
        var mask = new long[rows.Length * length];
        for (int r = 0; r < rows.Length; r++)
        {
            var row = rows[r];
            int o = r * length;
            for (int j = 0; j < length; j++)
            {
                if (j < row.InputIds.Length)
                {
                    inputIds[o + j] = row.InputIds[j];
                    typeIds[o + j] = row.TokenTypeIds[j];
                    mask[o + j] = 1;
                }
                else inputIds[o + j] = PadId;
            }
        }
        return new TokenizedBatch(rows.Length, length, inputIds, typeIds, mask);
    }

    /// <summary>The token with id <paramref name="id"/>.</summary>
    public string IdToToken(int id) =>
        (uint)id < (uint)_vocab.Length ? _vocab[id]
            : throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside the vocabulary of {_vocab.Length}");

    /// <summary>The id of <paramref name="token"/> (exact match); <see cref="UnkId"/> when it is not in the vocabulary.</summary>
    public int TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _tokenToId.TryGetValue(token, out int id) ? id : UnkId;
    }

    /// <summary>
    /// Decodes ids as Hugging Face's WordPiece decoder (the one in bert-base-uncased's tokenizer.json, cleanup on): pieces
    /// joined with spaces, "##" pieces glued to the previous one, no space before ". , ! ?".
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var sb = new StringBuilder();
        int index = 0;
        foreach (int id in ids)
        {
            if (skipSpecialTokens && _specialIds.Contains(id)) continue;
            string token = IdToToken(id);
            if (index > 0)
                token = token.StartsWith(SubwordPrefix, StringComparison.Ordinal) ? token[SubwordPrefix.Length..] : " " + token;
            sb.Append(CleanUp(token));
            index++;
        }
        return sb.ToString();
    }

    /// <summary>
    /// Writes vocab.txt (one token per line, in id order), tokenizer_config.json (tokenizer_class "BertTokenizer",
    /// do_lower_case, strip_accents, tokenize_chinese_chars, model_max_length and the special tokens) and
    /// special_tokens_map.json, so that Hugging Face transformers' AutoTokenizer/BertTokenizer loads the folder and
    /// <see cref="FromDirectory"/> reads it back.
    /// </summary>
    public void SaveTo(string dir)
    {
        ArgumentNullException.ThrowIfNull(dir);
        Directory.CreateDirectory(dir);
        var vocab = new StringBuilder();
        foreach (string token in _vocab) vocab.Append(token).Append('\n');
        AtomicFile.WriteAllText(Path.Combine(dir, "vocab.txt"), vocab.ToString());

        AtomicFile.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), WriteJson(w =>
        {
            w.WriteString("tokenizer_class", "BertTokenizer");
            w.WriteBoolean("do_lower_case", LowerCase);
            w.WriteBoolean("do_basic_tokenize", true);
            w.WriteNull("never_split");
            if (_stripAccentsSetting is bool s) w.WriteBoolean("strip_accents", s); else w.WriteNull("strip_accents");
            w.WriteBoolean("tokenize_chinese_chars", TokenizeChineseChars);
            w.WriteNumber("model_max_length", ModelMaxLength);
            // false: transformers then decodes exactly as Decode does (the WordPiece decoder's own clean-up only)
            w.WriteBoolean("clean_up_tokenization_spaces", false);
            WriteSpecialTokens(w);
        }));
        AtomicFile.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), WriteJson(WriteSpecialTokens));
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Encoding internals

    private const int DefaultModelMaxLength = 512;

    private sealed record SpecialTokenNames(string Pad, string Unk, string Cls, string Sep, string Mask)
    {
        public static readonly SpecialTokenNames Default = new("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]");
        public string[] All => [Pad, Unk, Cls, Sep, Mask];
    }

    private sealed class Pieces
    {
        public readonly List<int> Ids = [];
        public readonly List<string> Tokens = [];
        public readonly List<(int Start, int End)> Offsets = [];
        /// <summary>Token count after each word (pre-tokenizer split or literal special token).</summary>
        public readonly List<int> WordEnds = [];
        public int Count => Ids.Count;

        public void Add(int id, string token, int start, int end)
        {
            Ids.Add(id); Tokens.Add(token); Offsets.Add((start, end));
        }

        public void EndWord()
        {
            if (WordEnds.Count == 0 || WordEnds[^1] != Ids.Count) WordEnds.Add(Ids.Count);
        }

        /// <summary>
        /// The length HF tokenizers (0.23) hands to its truncation: with truncation on, it stops tokenising a sequence
        /// after the first whole word that brings it to <paramref name="maxLength"/> tokens or more. This only matters
        /// for which sequence keeps the odd token when both must be cut.
        /// </summary>
        public int LengthSeenByTruncation(int maxLength)
        {
            foreach (int end in WordEnds)
                if (end >= maxLength) return end;
            return Count;
        }
    }

    /// <summary>Normalised text where every UTF-16 unit remembers the [start,end) range of the original text it came from.</summary>
    private sealed class Normalized(int capacity)
    {
        public char[] Chars = new char[Math.Max(capacity, 16)];
        public int[] Starts = new int[Math.Max(capacity, 16)];
        public int[] Ends = new int[Math.Max(capacity, 16)];
        public int Length;

        public void Append(char c, int start, int end)
        {
            if (Length == Chars.Length)
            {
                Array.Resize(ref Chars, Length * 2);
                Array.Resize(ref Starts, Length * 2);
                Array.Resize(ref Ends, Length * 2);
            }
            Chars[Length] = c; Starts[Length] = start; Ends[Length] = end; Length++;
        }

        public void Append(Rune r, int start, int end)
        {
            if (r.IsBmp) Append((char)r.Value, start, end);
            else
            {
                Span<char> pair = stackalloc char[2];
                r.EncodeToUtf16(pair);
                Append(pair[0], start, end);
                Append(pair[1], start, end);
            }
        }
    }

    /// <summary>Splits out literal special tokens (leftmost-longest, case-sensitive, on the original text) and tokenises the rest.</summary>
    private void TokenizeInto(string text, Pieces output)
    {
        int segmentStart = 0;
        for (int i = 0; i < text.Length;)
        {
            int best = -1, bestLength = 0;
            for (int t = 0; t < _specialTokens.Length; t++)
            {
                string special = _specialTokens[t];
                if (special.Length > bestLength && text[i] == special[0] && i + special.Length <= text.Length
                    && string.CompareOrdinal(text, i, special, 0, special.Length) == 0)
                {
                    best = t;
                    bestLength = special.Length;
                }
            }
            if (best < 0)
            {
                i++;
                continue;
            }
            if (i > segmentStart) TokenizeSegment(text, segmentStart, i, output);
            output.Add(_specialTokenIds[best], _specialTokens[best], i, i + bestLength);
            output.EndWord();
            i += bestLength;
            segmentStart = i;
        }
        if (segmentStart < text.Length) TokenizeSegment(text, segmentStart, text.Length, output);
    }

    /// <summary>HF BertNormalizer + BertPreTokenizer on text[start..end), then the library's WordPiece on each word.</summary>
    private void TokenizeSegment(string text, int start, int end, Pieces output)
    {
        var norm = Normalize(text, start, end);
        ReadOnlySpan<char> chars = norm.Chars.AsSpan(0, norm.Length);

        int wordStart = -1, wordRunes = 0;
        for (int i = 0; i < chars.Length;)
        {
            Rune.DecodeFromUtf16(chars[i..], out Rune r, out int len);
            if (Rune.IsWhiteSpace(r))
            {
                if (wordStart >= 0) { EmitWord(norm, wordStart, i, wordRunes, output); wordStart = -1; }
            }
            else if (IsBertPunctuation(r))
            {
                if (wordStart >= 0) { EmitWord(norm, wordStart, i, wordRunes, output); wordStart = -1; }
                EmitWord(norm, i, i + len, 1, output);
            }
            else
            {
                if (wordStart < 0) { wordStart = i; wordRunes = 0; }
                wordRunes++;
            }
            i += len;
        }
        if (wordStart >= 0) EmitWord(norm, wordStart, chars.Length, wordRunes, output);
    }

    private void EmitWord(Normalized norm, int start, int end, int runeCount, Pieces output)
    {
        if (runeCount > MaxInputCharsPerWord)
        {
            output.Add(UnkId, UnkToken, norm.Starts[start], norm.Ends[end - 1]);
            output.EndWord();
            return;
        }
        var tokens = _wordPiece.EncodeToTokens(norm.Chars.AsSpan(start, end - start), out _,
            considerPreTokenization: false, considerNormalization: false);
        foreach (var token in tokens)
        {
            int s = start + token.Offset.Start.Value, e = start + token.Offset.End.Value;
            output.Add(token.Id, token.Value, norm.Starts[s], norm.Ends[e - 1]);
        }
        output.EndWord();
    }

    /// <summary>
    /// Hugging Face's BertNormalizer (Rust): clean text (drop NUL, U+FFFD and "other" characters except \t \n \r, map
    /// whitespace to ' '), pad CJK ideographs with spaces, strip accents (NFD, drop Mn), lower-case.
    /// </summary>
    private Normalized Normalize(string text, int start, int end)
    {
        var norm = new Normalized(end - start + 8);
        for (int i = start; i < end;)
        {
            var status = Rune.DecodeFromUtf16(text.AsSpan(i, end - i), out Rune r, out int len);
            int s = i, e = i + len;
            i += Math.Max(len, 1);
            if (status != OperationStatus.Done) continue;   // lone surrogate: not a character, dropped
            int cp = r.Value;
            if (cp == 0 || cp == 0xFFFD) continue;
            bool tabOrNewline = cp is '\t' or '\n' or '\r';
            if (!tabOrNewline && IsOther(Rune.GetUnicodeCategory(r))) continue;
            if (tabOrNewline || Rune.IsWhiteSpace(r))
            {
                norm.Append(' ', s, e);
                continue;
            }
            bool cjk = TokenizeChineseChars && IsChineseChar(cp);
            if (cjk) norm.Append(' ', s, e);
            if (StripAccents)
            {
                if (cp is >= HangulBase and < HangulBase + HangulCount)
                {
                    int index = cp - HangulBase;
                    AppendCased(norm, new Rune(0x1100 + index / 588), s, e);
                    AppendCased(norm, new Rune(0x1161 + index % 588 / 28), s, e);
                    if (index % 28 != 0) AppendCased(norm, new Rune(0x11A7 + index % 28), s, e);
                }
                else if (StripMarks(r) is string stripped)
                {
                    foreach (Rune d in stripped.EnumerateRunes()) AppendCased(norm, d, s, e);
                }
                else if (Rune.GetUnicodeCategory(r) != UnicodeCategory.NonSpacingMark)
                {
                    AppendCased(norm, r, s, e);
                }
            }
            else AppendCased(norm, r, s, e);
            if (cjk) norm.Append(' ', s, e);
        }
        return norm;
    }

    private void AppendCased(Normalized norm, Rune r, int start, int end)
    {
        if (!LowerCase) norm.Append(r, start, end);
        else if (r.Value == 0x130)
        {
            // the one unconditional multi-character lower-case mapping (Rust's char::to_lowercase): İ -> i + U+0307
            norm.Append('i', start, end);
            norm.Append('\u0307', start, end);
        }
        else norm.Append(Rune.ToLowerInvariant(r), start, end);
    }

    private static bool IsOther(UnicodeCategory c) => c is UnicodeCategory.Control or UnicodeCategory.Format
        or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned;

    private static bool IsBertPunctuation(Rune r)
    {
        int cp = r.Value;
        if (cp < 128) return cp is (>= 33 and <= 47) or (>= 58 and <= 64) or (>= 91 and <= 96) or (>= 123 and <= 126);
        return Rune.GetUnicodeCategory(r) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }

    /// <summary>The CJK ranges of HF tokenizers' BertNormalizer.</summary>
    private static bool IsChineseChar(int cp) => cp is (>= 0x4E00 and <= 0x9FFF) or (>= 0x3400 and <= 0x4DBF)
        or (>= 0x20000 and <= 0x2A6DF) or (>= 0x2A700 and <= 0x2B73F) or (>= 0x2B740 and <= 0x2B81F)
        or (>= 0x2B920 and <= 0x2CEAF) or (>= 0xF900 and <= 0xFAFF) or (>= 0x2F800 and <= 0x2FA1F);

    /// <summary>
    /// Token counts to keep for the first and second sequence, as HF tokenizers' <c>truncate_encodings</c> (Rust) computes
    /// them; <paramref name="budget"/> excludes the special tokens.
    /// </summary>
    private static (int A, int B) TruncatedLengths(int n1, int n2, bool pair, int budget, TruncationStrategy strategy)
    {
        if (n1 + n2 <= budget) return (n1, n2);
        if (strategy == TruncationStrategy.None)
            throw new ArgumentException(
                $"input of {n1 + n2} tokens plus {(pair ? 3 : 2)} special tokens exceeds maxLength {budget + (pair ? 3 : 2)} and truncation is None");
        if (!pair)
        {
            if (strategy == TruncationStrategy.OnlySecond)
                throw new ArgumentException("TruncationStrategy.OnlySecond needs a text pair, but there is no second text");
            return (budget, 0);
        }
        if (budget == 0) return (0, 0);
        switch (strategy)
        {
            case TruncationStrategy.LongestFirst:
            {
                bool swap = n1 > n2;
                int shorter = Math.Min(n1, n2);
                int longer = Math.Max(shorter, budget - shorter);
                if (shorter + longer > budget)
                {
                    shorter = budget / 2;
                    longer = shorter + budget % 2;
                }
                return swap ? (longer, shorter) : (shorter, longer);
            }
            case TruncationStrategy.OnlyFirst:
            case TruncationStrategy.OnlySecond:
            {
                int toRemove = n1 + n2 - budget;
                bool first = strategy == TruncationStrategy.OnlyFirst;
                int target = first ? n1 : n2;
                if (target <= toRemove)
                    throw new ArgumentException(
                        $"cannot fit the pair into {budget + 3} tokens by truncating only the {(first ? "first" : "second")} text " +
                        $"({target} tokens, {toRemove} to remove)");
                return first ? (n1 - toRemove, n2) : (n1, n2 - toRemove);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(strategy), strategy, "unknown truncation strategy");
        }
    }

    /// <summary>The per-token clean-up of HF tokenizers' WordPiece decoder.</summary>
    private static string CleanUp(string token) => token
        .Replace(" .", ".", StringComparison.Ordinal).Replace(" ?", "?", StringComparison.Ordinal)
        .Replace(" !", "!", StringComparison.Ordinal).Replace(" ,", ",", StringComparison.Ordinal)
        .Replace(" ' ", "'", StringComparison.Ordinal).Replace(" n't", "n't", StringComparison.Ordinal)
        .Replace(" 'm", "'m", StringComparison.Ordinal).Replace(" do not", " don't", StringComparison.Ordinal)
        .Replace(" 's", "'s", StringComparison.Ordinal).Replace(" 've", "'ve", StringComparison.Ordinal)
        .Replace(" 're", "'re", StringComparison.Ordinal);

    // ---------------------------------------------------------------------------------------------------------------
    // Files

    private static (string[] Vocab, Dictionary<string, int> TokenToId) ReadVocab(string path, byte[] bytes)
    {
        // Same line splitting as the library (StreamReader.ReadLine, BOM detected), so both agree on ids.
        var tokens = new List<string>();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        using var reader = new StreamReader(new MemoryStream(bytes, writable: false), Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            int id = tokens.Count;
            tokens.Add(line);
            if (line.Length == 0) continue;   // kept as an id (as HF and the library do); it never matches text
            if (!ids.TryAdd(line, id))
                throw new InvalidDataException($"{path}: duplicate token '{line}' on lines {ids[line] + 1} and {id + 1}");
        }
        if (tokens.Count == 0) throw new InvalidDataException($"{path}: empty vocabulary");
        return (tokens.ToArray(), ids);
    }

    private static bool? GetBool(JsonElement root, string name) =>
        root.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    /// <summary>A special token name: either a string or an AddedToken object with "content".</summary>
    private static string? GetTokenName(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var v)) return null;
        if (v.ValueKind == JsonValueKind.String) return v.GetString();
        if (v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String)
            return c.GetString();
        return null;
    }

    private void WriteSpecialTokens(Utf8JsonWriter w)
    {
        w.WriteString("unk_token", UnkToken);
        w.WriteString("sep_token", SepToken);
        w.WriteString("pad_token", PadToken);
        w.WriteString("cls_token", ClsToken);
        w.WriteString("mask_token", MaskToken);
    }

    private static string WriteJson(Action<Utf8JsonWriter> body)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions
               { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Accent stripping: NFD (ICU, through string.Normalize) then drop non-spacing marks, per character, so each output
    // character keeps the original range it came from. Hangul syllables are decomposed arithmetically (NFD's own rule)
    // to keep that per-jamo mapping explicit.

    private const int HangulBase = 0xAC00, HangulCount = 11172;

    /// <summary>The canonical decomposition of one character with non-spacing marks removed, or null if it has none.</summary>
    private static string? StripMarks(Rune r)
    {
        string original = r.ToString();
        string decomposed = original.Normalize(NormalizationForm.FormD);
        if (decomposed == original) return null;
        var kept = new StringBuilder(decomposed.Length);
        foreach (Rune d in decomposed.EnumerateRunes())
            if (Rune.GetUnicodeCategory(d) != UnicodeCategory.NonSpacingMark) kept.Append(d.ToString());
        return kept.ToString();
    }
}
