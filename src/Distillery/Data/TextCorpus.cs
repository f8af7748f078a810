using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Distillery.Text;

namespace Distillery.Data;

/// <summary>How a text file is cut into documents.</summary>
public enum DocumentSplit
{
    /// <summary>A blank line ends a document (the shared corpora's layout).</summary>
    BlankLine,
    /// <summary>Each file is one document.</summary>
    File,
}

/// <summary>What a line that is not valid UTF-8 does.</summary>
public enum InvalidUtf8
{
    /// <summary>Stop with an error naming the file and line.</summary>
    Error,
    /// <summary>Decode that line as Latin-1 (old Project Gutenberg files mix it in) and go on.</summary>
    Latin1,
}

/// <summary>
/// Unlabelled text for masked-LM pre-training and task-agnostic distillation: files or folders of UTF-8 text, read as a
/// stream line by line, tokenised once and cached (keyed by file size, modification time and the tokenizer), then packed
/// into full-length sequences <c>[CLS] t₁ … t_{L-2} [SEP]</c> with documents joined by <c>[SEP]</c>, as RoBERTa's
/// FULL-SENTENCES packing (no padding, no next-sentence task).
/// </summary>
public sealed class TextCorpus
{
    /// <summary>Every token of the corpus in order, documents separated by [SEP].</summary>
    public int[] Tokens { get; }
    /// <summary>Files read, in order.</summary>
    public IReadOnlyList<string> Files { get; }
    /// <summary>Number of documents.</summary>
    public long Documents { get; }

    private TextCorpus(int[] tokens, IReadOnlyList<string> files, long documents)
    {
        Tokens = tokens;
        Files = files;
        Documents = documents;
    }

    /// <summary>All regular files under the given files/folders (folders recursively, sorted ordinally); missing → error.</summary>
    public static IReadOnlyList<string> ExpandPaths(IEnumerable<string> paths)
    {
        var files = new List<string>();
        foreach (string path in paths)
        {
            if (File.Exists(path)) files.Add(Path.GetFullPath(path));
            else if (Directory.Exists(path))
                files.AddRange(Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories)
                    .Where(f => !Path.GetFileName(f).StartsWith('.') && !f.EndsWith(".md", StringComparison.OrdinalIgnoreCase))
                    .Select(Path.GetFullPath).Order(StringComparer.Ordinal));
            else throw new FileNotFoundException($"{path}: corpus file or folder not found", path);
        }
        if (files.Count == 0) throw new InvalidDataException($"no corpus files under {string.Join(", ", paths)}");
        return files;
    }

    /// <summary>
    /// Tokenises (or reads from <paramref name="cacheDir"/>) every file. <paramref name="progress"/> receives
    /// (files done, files total, current file).
    /// </summary>
    public static TextCorpus Load(IEnumerable<string> paths, BertTextTokenizer tokenizer, string cacheDir,
        DocumentSplit split = DocumentSplit.BlankLine, Action<int, int, string>? progress = null, InvalidUtf8 invalidUtf8 = InvalidUtf8.Error)
    {
        var files = ExpandPaths(paths);
        Directory.CreateDirectory(cacheDir);
        var perFile = new (int[] Tokens, long Documents)[files.Count];
        int done = 0;
        // Files are independent: tokenise them in parallel (the tokenizer is immutable and thread-safe).
        try
        {
            Parallel.For(0, files.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, i =>
            {
                perFile[i] = LoadFile(files[i], tokenizer, cacheDir, split, invalidUtf8);
                progress?.Invoke(Interlocked.Increment(ref done), files.Count, files[i]);
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            // Report the first file's problem as itself (one line), not as an aggregate.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
        long total = perFile.Sum(f => (long)f.Tokens.Length);
        if (total > int.MaxValue) throw new InvalidDataException($"corpus has {total} tokens; more than {int.MaxValue} is not supported");
        var tokens = new int[total];
        long at = 0;
        foreach (var f in perFile)
        {
            f.Tokens.CopyTo(tokens, at);
            at += f.Tokens.Length;
        }
        if (total == 0) throw new InvalidDataException($"corpus has no tokens ({files.Count} files)");
        return new TextCorpus(tokens, files, perFile.Sum(f => f.Documents));
    }

    /// <summary>The cache key of a file: its path, size and time, the split rule, and the tokenizer's identity.</summary>
    static string CacheKey(string file, BertTextTokenizer tokenizer, DocumentSplit split, InvalidUtf8 invalidUtf8)
    {
        var info = new FileInfo(file);
        string identity = $"{info.FullName}|{info.Length}|{info.LastWriteTimeUtc.Ticks}|{split}|{invalidUtf8}|{tokenizer.Fingerprint}|v1";
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(identity)))[..24].ToLowerInvariant();
    }

    static (int[] Tokens, long Documents) LoadFile(string file, BertTextTokenizer tokenizer, string cacheDir, DocumentSplit split, InvalidUtf8 invalidUtf8)
    {
        string cache = Path.Combine(cacheDir, $"{Path.GetFileNameWithoutExtension(file)}-{CacheKey(file, tokenizer, split, invalidUtf8)}.tokens");
        if (File.Exists(cache) && TryReadCache(cache) is { } cached) return cached;
        var result = Tokenize(file, tokenizer, split, invalidUtf8);
        AtomicFile.Write(cache, stream =>
        {
            // Layout: magic "DTOK", u32 version 1, i64 documents, i64 count, then count little-endian i32 token ids.
            var header = new byte[24];
            "DTOK"u8.CopyTo(header);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), 1);
            BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(8), result.Documents);
            BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(16), result.Tokens.Length);
            stream.Write(header);
            stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(result.Tokens.AsSpan()));
        });
        return result;
    }

    static (int[], long)? TryReadCache(string path)
    {
        // A cache file that does not match its own header is ignored and rebuilt, never trusted.
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < 24 || !bytes.AsSpan(0, 4).SequenceEqual("DTOK"u8) || BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(4)) != 1) return null;
        long documents = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(8));
        long count = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(16));
        if (count < 0 || documents < 0 || 24 + count * 4 != bytes.Length) return null;
        var tokens = new int[count];
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(bytes.AsSpan(24)).CopyTo(tokens);
        return (tokens, documents);
    }

    /// <summary>
    /// Streams one file line by line (bytes split on '\n', each line decoded strictly, so the reported line number is
    /// exact); a line that is not UTF-8 is an error naming the file and line, or is read as Latin-1 when asked.
    /// </summary>
    static (int[] Tokens, long Documents) Tokenize(string file, BertTextTokenizer tokenizer, DocumentSplit split, InvalidUtf8 invalidUtf8)
    {
        var tokens = new List<int>();
        long documents = 0;
        bool inDocument = false;
        var strict = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var line = new List<byte>(256);
        int lineNumber = 0;
        void EndDocument()
        {
            if (!inDocument) return;
            tokens.Add(tokenizer.SepId);   // document boundary
            documents++;
            inDocument = false;
        }
        void Process()
        {
            lineNumber++;
            var bytes = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(line);
            if (lineNumber == 1 && bytes.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) bytes = bytes[3..];
            if (bytes.Length > 0 && bytes[^1] == (byte)'\r') bytes = bytes[..^1];
            string text;
            try { text = strict.GetString(bytes); }
            catch (DecoderFallbackException)
            {
                if (invalidUtf8 == InvalidUtf8.Error) throw new InvalidDataException($"{file}:{lineNumber}: not valid UTF-8 text");
                text = Encoding.Latin1.GetString(bytes);
            }
            line.Clear();
            if (string.IsNullOrWhiteSpace(text))
            {
                if (split == DocumentSplit.BlankLine) EndDocument();
                return;
            }
            var ids = tokenizer.Tokenize(text).Ids;
            if (ids.Length == 0) return;
            tokens.AddRange(ids);
            inDocument = true;
        }
        var buffer = new byte[1 << 16];
        int read;
        while ((read = stream.Read(buffer)) > 0)
        {
            for (int i = 0; i < read; i++)
            {
                if (buffer[i] == (byte)'\n') Process();
                else line.Add(buffer[i]);
            }
        }
        if (line.Count > 0) Process();
        EndDocument();
        return (tokens.ToArray(), documents);
    }

    /// <summary>Number of packed sequences of <paramref name="seqLength"/> tokens (including [CLS] and [SEP]).</summary>
    public int SequenceCount(int seqLength) => Tokens.Length / (seqLength - 2);

    /// <summary>
    /// Packed sequence <paramref name="index"/>: <c>[CLS]</c>, the next L−2 corpus tokens, <c>[SEP]</c>, written into
    /// <paramref name="destination"/> (length L).
    /// </summary>
    public void CopySequence(int index, int seqLength, int clsId, int sepId, Span<int> destination)
    {
        int body = seqLength - 2;
        destination[0] = clsId;
        Tokens.AsSpan(index * body, body).CopyTo(destination[1..]);
        destination[seqLength - 1] = sepId;
    }
}
