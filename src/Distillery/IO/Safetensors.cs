using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;
using TorchSharp;

namespace Distillery.IO;

/// <summary>The element types Distillery reads and writes in safetensors files (the file spells <see cref="Bool"/> "BOOL").</summary>
public enum SafetensorsDType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, Bool }

/// <summary>
/// One tensor of a safetensors header. <see cref="Begin"/> and <see cref="End"/> are byte offsets relative to the start
/// of the data buffer (the byte right after the JSON header), End exclusive.
/// </summary>
public sealed record SafetensorsEntry(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End);

/// <summary>
/// Thrown for any malformed safetensors file. <see cref="Exception.Message"/> is one line:
/// <c>"&lt;path&gt;: &lt;what is wrong, naming the tensor when relevant&gt;"</c>.
/// </summary>
/// <remarks>
/// Derives from <see cref="IOException"/> because <see cref="InvalidDataException"/> is sealed; catch this type (or
/// IOException) rather than InvalidDataException.
/// </remarks>
public sealed class SafetensorsFormatException : IOException
{
    public SafetensorsFormatException(string path, string what) : this(path, what, null) { }

    public SafetensorsFormatException(string path, string what, Exception? innerException)
        : base(Safetensors.OneLine($"{path}: {what}"), innerException)
    {
        FilePath = path;
    }

    /// <summary>The file that is malformed, as the caller named it.</summary>
    public string FilePath { get; }
}

/// <summary>
/// A defensive reader and an atomic writer for the safetensors format (https://github.com/huggingface/safetensors):
/// an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data buffer, row-major and little-endian.
/// </summary>
/// <remarks>
/// Every structural problem of a file raises <see cref="SafetensorsFormatException"/> before any tensor is allocated;
/// the header length is checked against the file size (and a 100 MB cap) before it is allocated, and tensor data is
/// streamed from the file in chunks straight into the tensors' memory, so a file never has to fit in one array.
/// </remarks>
public static class Safetensors
{
    /// <summary>Largest header accepted, in bytes (the reference implementation's limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>Nesting limit for the header JSON; a valid header needs 3 levels.</summary>
    const int MaxJsonDepth = 16;

    /// <summary>Tensor data moves between file and tensor in pieces of at most this many bytes.</summary>
    const long ChunkBytes = 4 << 20;

    const string MetadataKey = "__metadata__";

    static readonly IReadOnlyDictionary<string, string> DefaultMetadata =
        new Dictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt" }.AsReadOnly();

    static readonly string SupportedDTypes = string.Join(", ", Enum.GetValues<SafetensorsDType>().Select(DTypeName));

    // ------------------------------------------------------------------------------------------------ dtypes

    /// <summary>The TorchSharp element type of a safetensors dtype.</summary>
    public static torch.ScalarType ToScalarType(SafetensorsDType d) => d switch
    {
        SafetensorsDType.F64 => torch.ScalarType.Float64,
        SafetensorsDType.F32 => torch.ScalarType.Float32,
        SafetensorsDType.F16 => torch.ScalarType.Float16,
        SafetensorsDType.BF16 => torch.ScalarType.BFloat16,
        SafetensorsDType.I64 => torch.ScalarType.Int64,
        SafetensorsDType.I32 => torch.ScalarType.Int32,
        SafetensorsDType.I16 => torch.ScalarType.Int16,
        SafetensorsDType.I8 => torch.ScalarType.Int8,
        SafetensorsDType.U8 => torch.ScalarType.Byte,
        SafetensorsDType.Bool => torch.ScalarType.Bool,
        _ => throw new NotSupportedException($"safetensors dtype {(int)d} is not supported"),
    };

    /// <summary>The safetensors dtype of a TorchSharp element type; <see cref="NotSupportedException"/> for complex types.</summary>
    public static SafetensorsDType FromScalarType(torch.ScalarType t) => t switch
    {
        torch.ScalarType.Float64 => SafetensorsDType.F64,
        torch.ScalarType.Float32 => SafetensorsDType.F32,
        torch.ScalarType.Float16 => SafetensorsDType.F16,
        torch.ScalarType.BFloat16 => SafetensorsDType.BF16,
        torch.ScalarType.Int64 => SafetensorsDType.I64,
        torch.ScalarType.Int32 => SafetensorsDType.I32,
        torch.ScalarType.Int16 => SafetensorsDType.I16,
        torch.ScalarType.Int8 => SafetensorsDType.I8,
        torch.ScalarType.Byte => SafetensorsDType.U8,
        torch.ScalarType.Bool => SafetensorsDType.Bool,
        _ => throw new NotSupportedException($"TorchSharp element type {t} cannot be stored in a safetensors file by Distillery"),
    };

    /// <summary>Bytes per element.</summary>
    public static int ElementSize(SafetensorsDType d) => d switch
    {
        SafetensorsDType.F64 or SafetensorsDType.I64 => 8,
        SafetensorsDType.F32 or SafetensorsDType.I32 => 4,
        SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.I16 => 2,
        SafetensorsDType.I8 or SafetensorsDType.U8 or SafetensorsDType.Bool => 1,
        _ => throw new NotSupportedException($"safetensors dtype {(int)d} is not supported"),
    };

    /// <summary>The dtype's spelling in a safetensors header.</summary>
    static string DTypeName(SafetensorsDType d) => d == SafetensorsDType.Bool ? "BOOL" : d.ToString();

    /// <summary>Exact, case-sensitive parse of a header dtype string (no numeric or case-folded forms).</summary>
    static bool TryParseDType(string s, out SafetensorsDType d)
    {
        switch (s)
        {
            case "F64": d = SafetensorsDType.F64; return true;
            case "F32": d = SafetensorsDType.F32; return true;
            case "F16": d = SafetensorsDType.F16; return true;
            case "BF16": d = SafetensorsDType.BF16; return true;
            case "I64": d = SafetensorsDType.I64; return true;
            case "I32": d = SafetensorsDType.I32; return true;
            case "I16": d = SafetensorsDType.I16; return true;
            case "I8": d = SafetensorsDType.I8; return true;
            case "U8": d = SafetensorsDType.U8; return true;
            case "BOOL": d = SafetensorsDType.Bool; return true;
            default: d = default; return false;
        }
    }

    // ------------------------------------------------------------------------------------------------ reading

    /// <summary>Reads and fully validates the header without reading tensor data. Entries are in header order.</summary>
    /// <exception cref="SafetensorsFormatException">The file is not a well-formed safetensors file.</exception>
    public static (IReadOnlyList<SafetensorsEntry> Entries, IReadOnlyDictionary<string, string> Metadata) ReadHeader(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var fs = OpenRead(path);
        var header = ReadHeaderCore(fs, path);
        return (header.Entries.AsReadOnly(), header.Metadata.AsReadOnly());
    }

    /// <summary>
    /// Loads every tensor (CPU, the file's dtype and shape) keyed by name, after validating the whole header.
    /// The tensors belong to the caller, who disposes them: they are detached from the dispose-scope system, so a scope
    /// open around this call does not dispose them.
    /// </summary>
    /// <exception cref="SafetensorsFormatException">The file is not a well-formed safetensors file.</exception>
    public static Dictionary<string, torch.Tensor> Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        EnsureLittleEndian();
        using var fs = OpenRead(path);
        var header = ReadHeaderCore(fs, path);
        var result = new Dictionary<string, torch.Tensor>(header.Entries.Count, StringComparer.Ordinal);
        // Everything made here, results included, is disposed if a later tensor fails. On success the results are
        // detached from every dispose scope (MoveToOuterDisposeScope would hand them to a scope the caller has open,
        // which would then dispose them): the caller owns them.
        using (torch.NewDisposeScope())
        {
            foreach (var entry in header.Entries)
            {
                var tensor = torch.empty(entry.Shape, ToScalarType(entry.DType), torch.CPU);
                ReadTensorData(fs, path, header.DataStart, entry, tensor);
                result.Add(entry.Name, tensor);
            }
            foreach (var tensor in result.Values) tensor.DetachFromDisposeScope();
        }
        return result;
    }

    sealed record Header(List<SafetensorsEntry> Entries, Dictionary<string, string> Metadata, long DataStart, long DataLength);

    static FileStream OpenRead(string path) =>
        new(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 4096, FileOptions.RandomAccess);

    static Header ReadHeaderCore(FileStream fs, string path)
    {
        long fileLength = fs.Length;
        if (fileLength < 8)
            throw Fail(path, $"file is {fileLength} bytes long, too short for the 8-byte header length");

        Span<byte> prefix = stackalloc byte[8];
        fs.Position = 0;
        fs.ReadExactly(prefix);
        ulong declared = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        // Both checks come before the header is allocated.
        if (declared > MaxHeaderBytes)
            throw Fail(path, $"header length {declared} bytes is over the {MaxHeaderBytes}-byte limit (corrupt, or not a safetensors file)");
        long headerLength = (long)declared;
        if (headerLength > fileLength - 8)
            throw Fail(path, $"header length {headerLength} bytes runs past the end of the file ({fileLength - 8} bytes follow the length)");

        var headerBytes = new byte[headerLength];
        try
        {
            fs.ReadExactly(headerBytes);
        }
        catch (EndOfStreamException e)
        {
            throw Fail(path, "file ended while reading the header (was it truncated meanwhile?)", e);
        }
        long dataStart = 8 + headerLength;
        long dataLength = fileLength - dataStart;

        if (!Utf8.IsValid(headerBytes)) throw Fail(path, "header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(headerBytes, new JsonDocumentOptions { MaxDepth = MaxJsonDepth });
        }
        catch (JsonException e)
        {
            throw Fail(path, $"header is not valid JSON: {e.Message}", e);
        }

        using (doc)
        {
            try
            {
                return ParseHeader(path, doc.RootElement, dataStart, dataLength);
            }
            catch (InvalidOperationException e)
            {
                // JsonElement throws this for strings it cannot turn into .NET strings (e.g. a lone "\ud800").
                throw Fail(path, $"header holds a string that cannot be decoded: {e.Message}", e);
            }
        }
    }

    static Header ParseHeader(string path, JsonElement root, long dataStart, long dataLength)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw Fail(path, $"header JSON is {Kind(root)}, not an object");

        var entries = new List<SafetensorsEntry>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        Dictionary<string, string>? metadata = null;
        foreach (var property in root.EnumerateObject())
        {
            string name = property.Name;
            if (name == MetadataKey)
            {
                if (metadata != null) throw Fail(path, $"\"{MetadataKey}\" appears more than once");
                metadata = ParseMetadata(path, property.Value);
                continue;
            }
            if (!names.Add(name)) throw Fail(path, $"duplicate tensor name {Q(name)}");
            entries.Add(ParseEntry(path, name, property.Value, dataLength));
        }

        CheckNoOverlap(path, entries);
        return new Header(entries, metadata ?? new Dictionary<string, string>(StringComparer.Ordinal), dataStart, dataLength);
    }

    static Dictionary<string, string> ParseMetadata(string path, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw Fail(path, $"\"{MetadataKey}\" is {Kind(value)}, not an object of strings");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw Fail(path, $"\"{MetadataKey}\" value of key {Q(item.Name)} is {Kind(item.Value)}, not a string");
            if (!metadata.TryAdd(item.Name, item.Value.GetString()!))
                throw Fail(path, $"\"{MetadataKey}\" has duplicate key {Q(item.Name)}");
        }
        return metadata;
    }

    static SafetensorsEntry ParseEntry(string path, string name, JsonElement value, long dataLength)
    {
        string where = $"tensor {Q(name)}";
        if (value.ValueKind != JsonValueKind.Object)
            throw Fail(path, $"{where}: entry is {Kind(value)}, not an object");

        JsonElement? dtypeElement = null, shapeElement = null, offsetsElement = null;
        foreach (var field in value.EnumerateObject())
        {
            switch (field.Name)
            {
                case "dtype": dtypeElement = Once(dtypeElement, field); break;
                case "shape": shapeElement = Once(shapeElement, field); break;
                case "data_offsets": offsetsElement = Once(offsetsElement, field); break;
                default: break; // unknown fields are tolerated
            }
        }

        JsonElement Once(JsonElement? seen, JsonProperty field) =>
            seen == null ? field.Value : throw Fail(path, $"{where}: \"{field.Name}\" appears more than once");

        // dtype
        if (dtypeElement is not { } dt) throw Fail(path, $"{where}: missing \"dtype\"");
        if (dt.ValueKind != JsonValueKind.String) throw Fail(path, $"{where}: \"dtype\" is {Kind(dt)}, not a string");
        string dtypeText = dt.GetString()!;
        if (!TryParseDType(dtypeText, out var dtype))
            throw Fail(path, $"{where}: unknown or unsupported dtype {Q(dtypeText)} (supported: {SupportedDTypes})");

        // shape
        if (shapeElement is not { } sh) throw Fail(path, $"{where}: missing \"shape\"");
        if (sh.ValueKind != JsonValueKind.Array) throw Fail(path, $"{where}: \"shape\" is {Kind(sh)}, not an array");
        var shape = new long[sh.GetArrayLength()];
        int i = 0;
        foreach (var dim in sh.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long d) || d < 0)
                throw Fail(path, $"{where}: shape[{i}] is {Snip(dim)}, not a non-negative integer");
            shape[i++] = d;
        }
        long numel = 1;
        try
        {
            foreach (long d in shape) numel = checked(numel * d);
        }
        catch (OverflowException)
        {
            throw Fail(path, $"{where}: element count of shape {FormatShape(shape)} overflows a 64-bit integer");
        }
        // With a zero dimension the element count is 0 whatever the others are, but libtorch still computes strides
        // from the other dimensions, so their product must fit as well.
        try
        {
            long extent = 1;
            foreach (long d in shape) extent = checked(extent * Math.Max(d, 1));
        }
        catch (OverflowException)
        {
            throw Fail(path, $"{where}: shape {FormatShape(shape)} is too large (its strides overflow a 64-bit integer)");
        }
        long byteCount;
        try
        {
            byteCount = checked(numel * ElementSize(dtype));
        }
        catch (OverflowException)
        {
            throw Fail(path, $"{where}: byte size of {DTypeName(dtype)} shape {FormatShape(shape)} overflows a 64-bit integer");
        }

        // data_offsets
        if (offsetsElement is not { } off) throw Fail(path, $"{where}: missing \"data_offsets\"");
        if (off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2
            || !TryNonNegative(off[0], out long begin) || !TryNonNegative(off[1], out long end))
            throw Fail(path, $"{where}: \"data_offsets\" is {Snip(off)}, not two non-negative integers [begin, end]");
        if (begin > end)
            throw Fail(path, $"{where}: data_offsets [{begin}, {end}] begin after end");
        if (end > dataLength)
            throw Fail(path, $"{where}: data_offsets [{begin}, {end}] end beyond the data buffer ({dataLength} bytes)");
        if (end - begin != byteCount)
            throw Fail(path, $"{where}: data_offsets [{begin}, {end}] cover {end - begin} bytes but {DTypeName(dtype)} shape {FormatShape(shape)} needs {byteCount}");

        return new SafetensorsEntry(name, dtype, shape, begin, end);
    }

    static bool TryNonNegative(JsonElement e, out long value)
    {
        value = 0;
        return e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out value) && value >= 0;
    }

    /// <summary>Two tensors may not share a byte; empty ranges share none. Gaps are tolerated.</summary>
    static void CheckNoOverlap(string path, List<SafetensorsEntry> entries)
    {
        var ranges = entries.Where(e => e.End > e.Begin)
            .OrderBy(e => e.Begin).ThenBy(e => e.End).ThenBy(e => e.Name, StringComparer.Ordinal).ToList();
        SafetensorsEntry? reach = null; // the range seen so far that ends last
        foreach (var e in ranges)
        {
            if (reach != null && e.Begin < reach.End)
                throw Fail(path, $"tensors {Q(reach.Name)} (bytes [{reach.Begin}, {reach.End})) and {Q(e.Name)} (bytes [{e.Begin}, {e.End})) overlap");
            if (reach == null || e.End > reach.End) reach = e;
        }
    }

    static void ReadTensorData(FileStream fs, string path, long dataStart, SafetensorsEntry entry, torch.Tensor tensor)
    {
        long byteCount = entry.End - entry.Begin;
        if (byteCount == 0) return;
        int elementSize = ElementSize(entry.DType);
        long numel = byteCount / elementSize;
        long perChunk = ChunkBytes / elementSize;
        fs.Position = dataStart + entry.Begin;
        var flat = tensor.view(-1); // a view: writing its bytes fills the tensor
        for (long first = 0; first < numel; first += perChunk)
        {
            long count = Math.Min(perChunk, numel - first);
            using var piece = flat.narrow(0, first, count);
            Span<byte> span = piece.bytes; // the piece's own memory (a contiguous view of the tensor)
            try
            {
                fs.ReadExactly(span);
            }
            catch (EndOfStreamException e)
            {
                throw Fail(path, $"tensor {Q(entry.Name)}: file ended while reading its data (was it truncated meanwhile?)", e);
            }
            if (entry.DType == SafetensorsDType.Bool)
            {
                int bad = span.IndexOfAnyExcept((byte)0, (byte)1);
                if (bad >= 0)
                    throw Fail(path, $"tensor {Q(entry.Name)}: BOOL element {first + bad} has byte value {span[bad]}, not 0 or 1");
            }
        }
    }

    // ------------------------------------------------------------------------------------------------ writing

    /// <summary>
    /// Writes <paramref name="tensors"/> atomically through <see cref="AtomicFile"/>: to a temporary file in the same
    /// folder, flushed to disk, then renamed onto <paramref name="path"/> (replacing it); on failure the temporary file is
    /// deleted and an existing file at <paramref name="path"/> is untouched. Keys are sorted ordinally, the header is padded with spaces
    /// to a multiple of 8 bytes, and the data is contiguous in key order. Tensors may live on any device, have any
    /// strides and require gradients; they are not modified or disposed.
    /// </summary>
    /// <param name="path">The destination file (its folder is created if missing).</param>
    /// <param name="tensors">The tensors to write, by name.</param>
    /// <param name="metadata">Written as <c>"__metadata__"</c>; null means <c>{"format":"pt"}</c>, an empty dictionary
    /// writes no <c>"__metadata__"</c> at all.</param>
    /// <exception cref="NotSupportedException">A tensor's element type has no safetensors dtype here (e.g. complex).</exception>
    /// <exception cref="ArgumentException">A tensor is null or disposed, or is named "__metadata__".</exception>
    public static void Save(string path, IReadOnlyDictionary<string, torch.Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        EnsureLittleEndian();
        metadata ??= DefaultMetadata;
        foreach (var (key, value) in metadata)
        {
            if (key is null || value is null) throw new ArgumentException("metadata keys and values may not be null", nameof(metadata));
        }

        // Plan the whole file, and fail on bad input, before anything touches the disk.
        var plan = new List<(torch.Tensor Tensor, SafetensorsEntry Entry)>(tensors.Count);
        long offset = 0;
        foreach (string name in tensors.Keys.OrderBy(k => k, StringComparer.Ordinal))
        {
            if (name == MetadataKey) throw new ArgumentException($"a tensor may not be named \"{MetadataKey}\"", nameof(tensors));
            var tensor = tensors[name];
            if (tensor is null || tensor.IsInvalid) throw new ArgumentException($"tensor {Q(name)} is null or disposed", nameof(tensors));
            SafetensorsDType dtype;
            try
            {
                dtype = FromScalarType(tensor.dtype);
            }
            catch (NotSupportedException e)
            {
                throw new NotSupportedException($"tensor {Q(name)}: {e.Message}", e);
            }
            long[] shape = tensor.shape;
            long byteCount = checked(shape.Aggregate(1L, (n, d) => checked(n * d)) * ElementSize(dtype));
            plan.Add((tensor, new SafetensorsEntry(name, dtype, shape, offset, checked(offset + byteCount))));
            offset = checked(offset + byteCount);
        }
        byte[] header = BuildHeader(plan.Select(p => p.Entry), metadata);

        string fullPath = Path.GetFullPath(path);
        if (string.IsNullOrEmpty(Path.GetFileName(fullPath))) throw new ArgumentException($"not a file path: {path}", nameof(path));
        AtomicFile.Write(fullPath, fs =>
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            fs.Write(prefix);
            fs.Write(header);
            foreach (var (tensor, entry) in plan) WriteTensorData(fs, tensor, entry);
        });
    }

    static byte[] BuildHeader(IEnumerable<SafetensorsEntry> entries, IReadOnlyDictionary<string, string> metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        // Relaxed escaping keeps non-ASCII names readable; quotes, backslashes and control characters are still escaped.
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (metadata.Count > 0)
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (key, value) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(key, value);
                w.WriteEndObject();
            }
            foreach (var e in entries)
            {
                w.WriteStartObject(e.Name);
                w.WriteString("dtype", DTypeName(e.DType));
                w.WriteStartArray("shape");
                foreach (long d in e.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(e.Begin);
                w.WriteNumberValue(e.End);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int padded = checked((buffer.WrittenCount + 7) & ~7);
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }

    static void WriteTensorData(Stream fs, torch.Tensor tensor, SafetensorsEntry entry)
    {
        long byteCount = entry.End - entry.Begin;
        if (byteCount == 0) return;
        using var scope = torch.NewDisposeScope();
        var data = tensor.detach().cpu().contiguous();
        if (FromScalarType(data.dtype) != entry.DType || data.NumberOfElements * data.ElementSize != byteCount)
            throw new InvalidOperationException($"tensor {Q(entry.Name)} changed while it was being saved");
        int elementSize = ElementSize(entry.DType);
        long numel = byteCount / elementSize;
        long perChunk = ChunkBytes / elementSize;
        var flat = data.view(-1);
        for (long first = 0; first < numel; first += perChunk)
        {
            using var piece = flat.narrow(0, first, Math.Min(perChunk, numel - first));
            fs.Write(piece.bytes);
        }
    }

    // ------------------------------------------------------------------------------------------------ helpers

    static void EnsureLittleEndian()
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors I/O here copies raw bytes and needs a little-endian machine");
    }

    static SafetensorsFormatException Fail(string path, string what, Exception? inner = null) => new(path, what, inner);

    static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "undefined",
    };

    /// <summary>A JSON value's text, shortened, for messages.</summary>
    static string Snip(JsonElement e)
    {
        string raw = e.GetRawText();
        return raw.Length <= 40 ? raw : raw[..40] + "…";
    }

    static string FormatShape(long[] shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>A name quoted for a one-line message: control characters escaped, long names shortened.</summary>
    internal static string Q(string s)
    {
        var sb = new StringBuilder(s.Length + 2).Append('\'');
        foreach (char c in s.Length <= 200 ? s : s[..200])
        {
            if (c == '\'' || c == '\\') sb.Append('\\').Append(c);
            else if (char.IsControl(c) || c is '\u2028' or '\u2029') sb.Append($"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        if (s.Length > 200) sb.Append('…');
        return sb.Append('\'').ToString();
    }

    /// <summary>Folds any line breaks or other control characters into spaces so a message stays on one line.</summary>
    internal static string OneLine(string s)
    {
        if (!s.Any(c => char.IsControl(c) || c is '\u2028' or '\u2029')) return s;
        var sb = new StringBuilder(s.Length);
        foreach (char c in s) sb.Append(char.IsControl(c) || c is '\u2028' or '\u2029' ? ' ' : c);
        return sb.ToString();
    }
}
