using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Distillery.IO;
using TorchSharp;

namespace Distillery.Tests;

public class SafetensorsTests
{
    // ------------------------------------------------------------------------------------------------ helpers

    static readonly SafetensorsDType[] AllDTypes = Enum.GetValues<SafetensorsDType>();

    /// <summary>A tensor of the given dtype and shape filled with random bit patterns (0/1 for BOOL).</summary>
    static torch.Tensor RandomTensor(SafetensorsDType d, long[] shape, int seed)
    {
        var t = torch.empty(shape, Safetensors.ToScalarType(d));
        var bytes = new byte[t.NumberOfElements * t.ElementSize];
        new Random(seed).NextBytes(bytes);
        if (d == SafetensorsDType.Bool)
        {
            for (int i = 0; i < bytes.Length; i++) bytes[i] &= 1;
        }
        t.bytes = bytes;
        return t;
    }

    static byte[] Bytes(torch.Tensor t) => t.contiguous().bytes.ToArray();

    static void AssertSameTensor(torch.Tensor expected, torch.Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        Assert.Equal(DeviceType.CPU, actual.device_type);
        Assert.Equal(Bytes(expected), Bytes(actual));
    }

    /// <summary>Writes a hand-made file: the length prefix (declared, or the header's length), header, then data.</summary>
    static void WriteRaw(string path, byte[] header, byte[] data, ulong? declaredLength = null)
    {
        var prefix = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, declaredLength ?? (ulong)header.Length);
        File.WriteAllBytes(path, [.. prefix, .. header, .. data]);
    }

    /// <summary>Header JSON written with ' for " so cases stay readable.</summary>
    static byte[] J(string json) => Encoding.UTF8.GetBytes(json.Replace('\'', '"'));

    /// <summary>Both ReadHeader and Load must reject the file with the same one-line message naming the file.</summary>
    static SafetensorsFormatException AssertMalformed(string path, string fragment)
    {
        var fromHeader = Assert.Throws<SafetensorsFormatException>(() => Safetensors.ReadHeader(path));
        var fromLoad = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Load(path));
        Assert.Equal(fromHeader.Message, fromLoad.Message);
        Assert.Equal(path, fromHeader.FilePath);
        Assert.StartsWith(path + ": ", fromHeader.Message);
        Assert.DoesNotContain('\n', fromHeader.Message);
        Assert.DoesNotContain('\r', fromHeader.Message);
        Assert.Contains(fragment, fromHeader.Message);
        Assert.IsAssignableFrom<IOException>(fromHeader);
        return fromHeader;
    }

    static (ulong HeaderLength, string HeaderText, long FileLength) RawLayout(string path)
    {
        byte[] file = File.ReadAllBytes(path);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        return (n, Encoding.UTF8.GetString(file, 8, (int)n), file.LongLength);
    }

    static void DisposeAll(Dictionary<string, torch.Tensor> tensors)
    {
        foreach (var t in tensors.Values) t.Dispose();
    }

    // ------------------------------------------------------------------------------------------------ round trips

    [Theory]
    [InlineData(SafetensorsDType.F64)]
    [InlineData(SafetensorsDType.F32)]
    [InlineData(SafetensorsDType.F16)]
    [InlineData(SafetensorsDType.BF16)]
    [InlineData(SafetensorsDType.I64)]
    [InlineData(SafetensorsDType.I32)]
    [InlineData(SafetensorsDType.I16)]
    [InlineData(SafetensorsDType.I8)]
    [InlineData(SafetensorsDType.U8)]
    [InlineData(SafetensorsDType.Bool)]
    public void RoundTrip_EachDType_IsBitExact(SafetensorsDType dtype)
    {
        using var tmp = new TestData.TempDir();
        using var t = RandomTensor(dtype, [3, 5], seed: (int)dtype + 1);
        Safetensors.Save(tmp["x.safetensors"], new Dictionary<string, torch.Tensor> { ["x"] = t });

        var (entries, _) = Safetensors.ReadHeader(tmp["x.safetensors"]);
        var entry = Assert.Single(entries);
        Assert.Equal(new SafetensorsEntry("x", dtype, [3, 5], 0, 15L * Safetensors.ElementSize(dtype)) with { Shape = entry.Shape }, entry);
        Assert.Equal([3L, 5L], entry.Shape);

        var loaded = Safetensors.Load(tmp["x.safetensors"]);
        AssertSameTensor(t, Assert.Single(loaded).Value);
        DisposeAll(loaded);
    }

    [Fact]
    public void RoundTrip_AllDTypesInOneFile_WithUnalignedOffsets_IsBitExact()
    {
        using var tmp = new TestData.TempDir();
        var tensors = new Dictionary<string, torch.Tensor>();
        int seed = 0;
        foreach (var d in AllDTypes)
        {
            tensors[$"odd.{d}"] = RandomTensor(d, [3, 1, 7], ++seed);
            tensors[$"vec.{d}"] = RandomTensor(d, [5], ++seed);
        }
        Safetensors.Save(tmp["all.safetensors"], tensors);

        var loaded = Safetensors.Load(tmp["all.safetensors"]);
        Assert.Equal(tensors.Keys.Order(StringComparer.Ordinal), loaded.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, t) in tensors) AssertSameTensor(t, loaded[name]);
        DisposeAll(loaded);
        DisposeAll(tensors);
    }

    [Fact]
    public void ZeroElementAndScalarTensors_RoundTrip()
    {
        using var tmp = new TestData.TempDir();
        var tensors = new Dictionary<string, torch.Tensor>
        {
            ["empty1d"] = torch.empty([0], torch.float32),
            ["empty3d"] = torch.empty([2, 0, 3], torch.bfloat16),
            ["scalar"] = torch.tensor(3.5f),
            ["scalar_i64"] = torch.tensor(-7L),
            ["after"] = torch.arange(4, dtype: torch.int32),
        };
        Safetensors.Save(tmp["z.safetensors"], tensors);

        var (entries, _) = Safetensors.ReadHeader(tmp["z.safetensors"]);
        var byName = entries.ToDictionary(e => e.Name);
        Assert.Equal(byName["empty1d"].Begin, byName["empty1d"].End);
        Assert.Equal(byName["empty3d"].Begin, byName["empty3d"].End);
        Assert.Equal([2L, 0L, 3L], byName["empty3d"].Shape);
        Assert.Empty(byName["scalar"].Shape);
        Assert.Equal(4, byName["scalar"].End - byName["scalar"].Begin);

        var loaded = Safetensors.Load(tmp["z.safetensors"]);
        foreach (var (name, t) in tensors) AssertSameTensor(t, loaded[name]);
        Assert.Equal(0, loaded["scalar"].Dimensions);
        Assert.Equal(3.5f, loaded["scalar"].item<float>());
        Assert.Equal(-7L, loaded["scalar_i64"].item<long>());
        Assert.Equal([0, 1, 2, 3], loaded["after"].data<int>().ToArray());
        DisposeAll(loaded);
        DisposeAll(tensors);
    }

    [Fact]
    public void Save_NonContiguousAndGradTensors_WritesRowMajorValues_AndLeavesInputsUsable()
    {
        using var tmp = new TestData.TempDir();
        using var baseTensor = torch.arange(6, dtype: torch.float32).reshape(2, 3);
        using var transposed = baseTensor.t(); // [3, 2], not contiguous
        using var grad = torch.ones(2, 2).requires_grad_();
        Assert.False(transposed.is_contiguous());
        Safetensors.Save(tmp["nc.safetensors"], new Dictionary<string, torch.Tensor> { ["t"] = transposed, ["g"] = grad });

        var loaded = Safetensors.Load(tmp["nc.safetensors"]);
        Assert.Equal([3L, 2L], loaded["t"].shape);
        Assert.Equal([0f, 3f, 1f, 4f, 2f, 5f], loaded["t"].data<float>().ToArray());
        Assert.False(loaded["g"].requires_grad);
        Assert.False(transposed.IsInvalid);
        Assert.False(grad.IsInvalid);
        Assert.True(grad.requires_grad);
        DisposeAll(loaded);
    }

    [Fact]
    public void Metadata_RoundTrips_DefaultsToFormatPt_AndEmptyWritesNone()
    {
        using var tmp = new TestData.TempDir();
        using var t = torch.zeros(2);
        var tensors = new Dictionary<string, torch.Tensor> { ["t"] = t };

        var custom = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "quote \" back\\slash\nnewline ünïcødé", ["empty"] = "" };
        Safetensors.Save(tmp["custom.safetensors"], tensors, custom);
        var (_, readBack) = Safetensors.ReadHeader(tmp["custom.safetensors"]);
        Assert.Equal(custom.OrderBy(kv => kv.Key, StringComparer.Ordinal), readBack.OrderBy(kv => kv.Key, StringComparer.Ordinal));

        Safetensors.Save(tmp["default.safetensors"], tensors);
        var (_, defaults) = Safetensors.ReadHeader(tmp["default.safetensors"]);
        Assert.Equal("pt", Assert.Single(defaults, kv => kv.Key == "format").Value);
        Assert.Single(defaults);

        Safetensors.Save(tmp["none.safetensors"], tensors, new Dictionary<string, string>());
        var (_, none) = Safetensors.ReadHeader(tmp["none.safetensors"]);
        Assert.Empty(none);
        Assert.DoesNotContain("__metadata__", RawLayout(tmp["none.safetensors"]).HeaderText);
    }

    // ------------------------------------------------------------------------------------------------ layout

    [Fact]
    public void Save_Layout_PaddedHeader_SortedKeys_ContiguousData()
    {
        using var tmp = new TestData.TempDir();
        string[] names = ["b", "a", "B", "a.b", "ä", "a_", "z.weight"];
        var tensors = new Dictionary<string, torch.Tensor>();
        for (int i = 0; i < names.Length; i++) tensors[names[i]] = RandomTensor(SafetensorsDType.F32, [i + 1], seed: i);
        string path = tmp["layout.safetensors"];
        Safetensors.Save(path, tensors);

        var (n, headerText, fileLength) = RawLayout(path);
        Assert.Equal(0UL, n % 8);
        string json = headerText.TrimEnd(' ');
        Assert.True(headerText.Length - json.Length < 8, "padding is fewer than 8 spaces");
        Assert.EndsWith("}", json);

        using var doc = JsonDocument.Parse(json);
        var keys = doc.RootElement.EnumerateObject().Select(p => p.Name).Where(k => k != "__metadata__").ToArray();
        Assert.Equal(names.Order(StringComparer.Ordinal), keys);

        // Data starts at 8 + N, contiguous in key order, and fills the rest of the file exactly.
        var (entries, _) = Safetensors.ReadHeader(path);
        Assert.Equal(keys, entries.Select(e => e.Name));
        long expectedBegin = 0;
        foreach (var e in entries)
        {
            Assert.Equal(expectedBegin, e.Begin);
            expectedBegin = e.End;
        }
        Assert.Equal(fileLength - 8 - (long)n, expectedBegin);

        byte[] file = File.ReadAllBytes(path);
        foreach (var e in entries)
        {
            byte[] onDisk = file.AsSpan((int)(8 + (long)n + e.Begin), (int)(e.End - e.Begin)).ToArray();
            Assert.Equal(Bytes(tensors[e.Name]), onDisk);
        }
        DisposeAll(tensors);
    }

    [Fact]
    public void Save_Overwrites_AndLeavesNoTemporaryFiles()
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["w.safetensors"];
        File.WriteAllText(path, "old contents");
        using var t = torch.arange(3, dtype: torch.int64);
        Safetensors.Save(path, new Dictionary<string, torch.Tensor> { ["t"] = t });

        Assert.Equal([path], Directory.GetFiles(tmp.Dir));
        var loaded = Safetensors.Load(path);
        Assert.Equal([0L, 1L, 2L], loaded["t"].data<long>().ToArray());
        DisposeAll(loaded);
    }

    [Fact]
    public void Save_Failure_LeavesNoFile_AndKeepsExistingDestination()
    {
        using var tmp = new TestData.TempDir();
        // A meta tensor has a shape and dtype (so the header is planned and the temp file written) but no data,
        // so the save fails part-way through writing tensor data.
        using var good = torch.ones(4);
        using var meta = torch.empty([2, 3], torch.float32, new torch.Device(DeviceType.META));
        var tensors = new Dictionary<string, torch.Tensor> { ["a"] = good, ["b"] = meta };

        string fresh = tmp["fresh.safetensors"];
        var e = Assert.ThrowsAny<Exception>(() => Safetensors.Save(fresh, tensors));
        Assert.Contains("meta", e.Message); // failed while copying data, after the temporary file was created
        Assert.False(File.Exists(fresh));
        Assert.Empty(Directory.GetFiles(tmp.Dir));

        string existing = tmp["existing.safetensors"];
        File.WriteAllBytes(existing, [1, 2, 3]);
        Assert.ThrowsAny<Exception>(() => Safetensors.Save(existing, tensors));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(existing));
        Assert.Equal([existing], Directory.GetFiles(tmp.Dir));
    }

    [Fact]
    public void Save_RejectsBadInput_BeforeWritingAnything()
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["bad.safetensors"];
        using var ok = torch.ones(2);
        using var complex = torch.zeros(2, dtype: torch.complex64);

        var e = Assert.Throws<NotSupportedException>(() =>
            Safetensors.Save(path, new Dictionary<string, torch.Tensor> { ["ok"] = ok, ["c"] = complex }));
        Assert.Contains("'c'", e.Message);
        Assert.Throws<ArgumentException>(() =>
            Safetensors.Save(path, new Dictionary<string, torch.Tensor> { ["__metadata__"] = ok }));
        var disposed = torch.ones(1);
        disposed.Dispose();
        Assert.Throws<ArgumentException>(() =>
            Safetensors.Save(path, new Dictionary<string, torch.Tensor> { ["d"] = disposed }));
        Assert.Empty(Directory.GetFiles(tmp.Dir));
    }

    [Fact]
    public void Load_InsideDisposeScope_ReturnsTensorsThatOutliveTheScope()
    {
        using var tmp = new TestData.TempDir();
        using (var t = torch.arange(5, dtype: torch.float32))
            Safetensors.Save(tmp["s.safetensors"], new Dictionary<string, torch.Tensor> { ["t"] = t });

        Dictionary<string, torch.Tensor> loaded;
        using (torch.NewDisposeScope())
        {
            loaded = Safetensors.Load(tmp["s.safetensors"]);
        }
        Assert.False(loaded["t"].IsInvalid);
        Assert.Equal([0f, 1f, 2f, 3f, 4f], loaded["t"].data<float>().ToArray());
        DisposeAll(loaded);
    }

    [Fact]
    public void DTypeMappings_AgreeWithTorch()
    {
        foreach (var d in AllDTypes)
        {
            var st = Safetensors.ToScalarType(d);
            Assert.Equal(d, Safetensors.FromScalarType(st));
            using var t = torch.empty([1], st);
            Assert.Equal(t.ElementSize, Safetensors.ElementSize(d));
        }
        Assert.Throws<NotSupportedException>(() => Safetensors.FromScalarType(torch.ScalarType.ComplexFloat32));
        Assert.Throws<NotSupportedException>(() => Safetensors.ToScalarType((SafetensorsDType)99));
        Assert.Throws<NotSupportedException>(() => Safetensors.ElementSize((SafetensorsDType)99));
    }

    // ------------------------------------------------------------------------------------------------ tolerated oddities

    [Fact]
    public void Read_ToleratesGapsUnknownFieldsAndEmptyRangesAnywhere()
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["gaps.safetensors"];
        byte[] data = new byte[16];
        BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(0), 11);
        BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(12), 22);
        WriteRaw(path, J("""
            {'b':{'dtype':'I32','shape':[1],'data_offsets':[12,16],'extra':{'x':[1]}},
             'a':{'dtype':'I32','shape':[],'data_offsets':[0,4]},
             'e':{'dtype':'F32','shape':[0,5],'data_offsets':[2,2]},
             'f':{'dtype':'U8','shape':[0],'data_offsets':[16,16]}}
            """), data);

        var (entries, metadata) = Safetensors.ReadHeader(path);
        Assert.Equal(["b", "a", "e", "f"], entries.Select(e => e.Name));
        Assert.Empty(metadata);
        var loaded = Safetensors.Load(path);
        Assert.Equal(11, loaded["a"].item<int>());
        Assert.Equal(22, loaded["b"].data<int>()[0]);
        Assert.Equal([0L, 5L], loaded["e"].shape);
        DisposeAll(loaded);

        string empty = tmp["empty.safetensors"];
        WriteRaw(empty, J("{}      "), []);
        Assert.Empty(Safetensors.ReadHeader(empty).Entries);
        Assert.Empty(Safetensors.Load(empty));
    }

    // ------------------------------------------------------------------------------------------------ corruption

    [Fact]
    public void Malformed_FileShorterThan8Bytes()
    {
        using var tmp = new TestData.TempDir();
        File.WriteAllBytes(tmp["0.safetensors"], []);
        AssertMalformed(tmp["0.safetensors"], "file is 0 bytes long, too short");
        File.WriteAllBytes(tmp["7.safetensors"], [2, 0, 0, 0, 0, 0, 0]);
        AssertMalformed(tmp["7.safetensors"], "file is 7 bytes long, too short");
    }

    [Fact]
    public void Malformed_HeaderLengthPastEndOfFile()
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["h.safetensors"];
        WriteRaw(path, J("{}"), [], declaredLength: 3);
        AssertMalformed(path, "header length 3 bytes runs past the end of the file (2 bytes follow the length)");
        WriteRaw(path, [], [], declaredLength: 1);
        AssertMalformed(path, "runs past the end of the file (0 bytes follow");
    }

    [Theory]
    [InlineData(100_000_001UL)]
    [InlineData(1UL << 40)]
    [InlineData(ulong.MaxValue)]
    public void Malformed_HeaderLengthAbsurd_IsRejectedWithoutAllocating(ulong declared)
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["huge.safetensors"];
        WriteRaw(path, J("{}"), [], declaredLength: declared);
        AssertMalformed(path, $"header length {declared} bytes is over the 100000000-byte limit");
    }

    [Fact]
    public void Malformed_HeaderNotUtf8()
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["u.safetensors"];
        WriteRaw(path, [.. J("{'a"), 0xFF, 0xFE, .. J("':{}}")], []);
        AssertMalformed(path, "header is not valid UTF-8");
    }

    [Theory]
    [InlineData("", "header is not valid JSON")]
    [InlineData("        ", "header is not valid JSON")]
    [InlineData("{'a': ", "header is not valid JSON")]
    [InlineData("{} trailing", "header is not valid JSON")]
    [InlineData("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4],},}", "header is not valid JSON")]
    [InlineData("{'a':{'x':[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}}", "header is not valid JSON")]
    [InlineData("[1, 2]", "header JSON is an array, not an object")]
    [InlineData("'text'", "header JSON is a string, not an object")]
    [InlineData("null", "header JSON is null, not an object")]
    public void Malformed_HeaderNotJsonObject(string header, string fragment)
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["j.safetensors"];
        WriteRaw(path, J(header), new byte[16]);
        AssertMalformed(path, fragment);
    }

    // Every case has a 16-byte data buffer after the header.
    [Theory]
    // entry not an object / missing fields
    [InlineData("{'a': 5}", "tensor 'a': entry is a number, not an object")]
    [InlineData("{'a': [0, 4]}", "tensor 'a': entry is an array, not an object")]
    [InlineData("{'a': {'shape':[1],'data_offsets':[0,4]}}", "tensor 'a': missing \"dtype\"")]
    [InlineData("{'a': {'dtype':'F32','data_offsets':[0,4]}}", "tensor 'a': missing \"shape\"")]
    [InlineData("{'a': {'dtype':'F32','shape':[1]}}", "tensor 'a': missing \"data_offsets\"")]
    [InlineData("{'a': {'dtype':'F32','dtype':'F32','shape':[1],'data_offsets':[0,4]}}", "tensor 'a': \"dtype\" appears more than once")]
    // dtype
    [InlineData("{'a': {'dtype':'F31','shape':[1],'data_offsets':[0,4]}}", "tensor 'a': unknown or unsupported dtype 'F31' (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)")]
    [InlineData("{'a': {'dtype':'f32','shape':[1],'data_offsets':[0,4]}}", "unknown or unsupported dtype 'f32'")]
    [InlineData("{'a': {'dtype':'Bool','shape':[1],'data_offsets':[0,1]}}", "unknown or unsupported dtype 'Bool'")]
    [InlineData("{'a': {'dtype':'U32','shape':[1],'data_offsets':[0,4]}}", "unknown or unsupported dtype 'U32'")]
    [InlineData("{'a': {'dtype':1,'shape':[1],'data_offsets':[0,4]}}", "tensor 'a': \"dtype\" is a number, not a string")]
    // shape
    [InlineData("{'a': {'dtype':'F32','shape':[-1],'data_offsets':[0,4]}}", "tensor 'a': shape[0] is -1, not a non-negative integer")]
    [InlineData("{'a': {'dtype':'F32','shape':[1,1.5],'data_offsets':[0,4]}}", "tensor 'a': shape[1] is 1.5, not a non-negative integer")]
    [InlineData("{'a': {'dtype':'F32','shape':[1.0],'data_offsets':[0,4]}}", "tensor 'a': shape[0] is 1.0, not a non-negative integer")]
    [InlineData("{'a': {'dtype':'F32','shape':['1'],'data_offsets':[0,4]}}", "tensor 'a': shape[0] is \"1\", not a non-negative integer")]
    [InlineData("{'a': {'dtype':'F32','shape':[18446744073709551616],'data_offsets':[0,4]}}", "shape[0] is 18446744073709551616, not a non-negative integer")]
    [InlineData("{'a': {'dtype':'F32','shape':4,'data_offsets':[0,4]}}", "tensor 'a': \"shape\" is a number, not an array")]
    // element count / byte size overflow
    [InlineData("{'a': {'dtype':'F32','shape':[4294967296,4294967296],'data_offsets':[0,4]}}", "tensor 'a': element count of shape [4294967296, 4294967296] overflows a 64-bit integer")]
    [InlineData("{'a': {'dtype':'F32','shape':[0,4611686018427387904,4611686018427387904],'data_offsets':[0,0]}}", "tensor 'a': shape [0, 4611686018427387904, 4611686018427387904] is too large (its strides overflow a 64-bit integer)")]
    [InlineData("{'a': {'dtype':'F32','shape':[2305843009213693952],'data_offsets':[0,4]}}", "tensor 'a': byte size of F32 shape [2305843009213693952] overflows a 64-bit integer")]
    // data_offsets
    [InlineData("{'a': {'dtype':'F32','shape':[1],'data_offsets':[4]}}", "tensor 'a': \"data_offsets\" is [4], not two non-negative integers [begin, end]")]
    [InlineData("{'a': {'dtype':'F32','shape':[1],'data_offsets':[0,4,8]}}", "not two non-negative integers")]
    [InlineData("{'a': {'dtype':'F32','shape':[1],'data_offsets':[-4,0]}}", "not two non-negative integers")]
    [InlineData("{'a': {'dtype':'F32','shape':[1],'data_offsets':[0,'4']}}", "not two non-negative integers")]
    [InlineData("{'a': {'dtype':'F32','shape':[1],'data_offsets':[0,4.0]}}", "not two non-negative integers")]
    [InlineData("{'a': {'dtype':'F32','shape':[1],'data_offsets':{'begin':0,'end':4}}}", "not two non-negative integers")]
    [InlineData("{'a': {'dtype':'F32','shape':[1],'data_offsets':[8,4]}}", "tensor 'a': data_offsets [8, 4] begin after end")]
    [InlineData("{'a': {'dtype':'F32','shape':[5],'data_offsets':[0,20]}}", "tensor 'a': data_offsets [0, 20] end beyond the data buffer (16 bytes)")]
    [InlineData("{'a': {'dtype':'F32','shape':[1],'data_offsets':[14,18]}}", "end beyond the data buffer")]
    [InlineData("{'a': {'dtype':'F32','shape':[2],'data_offsets':[0,4]}}", "tensor 'a': data_offsets [0, 4] cover 4 bytes but F32 shape [2] needs 8")]
    [InlineData("{'a': {'dtype':'BF16','shape':[2,2],'data_offsets':[0,16]}}", "cover 16 bytes but BF16 shape [2, 2] needs 8")]
    [InlineData("{'a': {'dtype':'F32','shape':[0],'data_offsets':[0,4]}}", "cover 4 bytes but F32 shape [0] needs 0")]
    // overlapping ranges
    [InlineData("{'a': {'dtype':'F32','shape':[2],'data_offsets':[0,8]}, 'b': {'dtype':'F32','shape':[2],'data_offsets':[4,12]}}", "tensors 'a' (bytes [0, 8)) and 'b' (bytes [4, 12)) overlap")]
    [InlineData("{'b': {'dtype':'U8','shape':[1],'data_offsets':[9,10]}, 'a': {'dtype':'F32','shape':[4],'data_offsets':[0,16]}}", "tensors 'a' (bytes [0, 16)) and 'b' (bytes [9, 10)) overlap")]
    [InlineData("{'a': {'dtype':'F32','shape':[2],'data_offsets':[0,8]}, 'b': {'dtype':'I64','shape':[1],'data_offsets':[0,8]}}", "tensors 'a' (bytes [0, 8)) and 'b' (bytes [0, 8)) overlap")]
    // __metadata__
    [InlineData("{'__metadata__': [1]}", "\"__metadata__\" is an array, not an object of strings")]
    [InlineData("{'__metadata__': 'pt'}", "\"__metadata__\" is a string, not an object of strings")]
    [InlineData("{'__metadata__': {'format':'pt','n':1}}", "\"__metadata__\" value of key 'n' is a number, not a string")]
    [InlineData("{'__metadata__': {'k':{'nested':'x'}}}", "\"__metadata__\" value of key 'k' is an object, not a string")]
    [InlineData("{'__metadata__': {'k':'x','k':'y'}}", "\"__metadata__\" has duplicate key 'k'")]
    [InlineData("{'__metadata__': {}, '__metadata__': {}}", "\"__metadata__\" appears more than once")]
    // duplicate names
    [InlineData("{'a': {'dtype':'U8','shape':[1],'data_offsets':[0,1]}, 'a': {'dtype':'U8','shape':[1],'data_offsets':[1,2]}}", "duplicate tensor name 'a'")]
    public void Malformed_Header(string header, string fragment)
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["m.safetensors"];
        WriteRaw(path, J(header), new byte[16]);
        AssertMalformed(path, fragment);
    }

    [Fact]
    public void Malformed_MessagesStayOnOneLine_EvenForNamesWithLineBreaks()
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["nl.safetensors"];
        WriteRaw(path, J("{'x\\ny': {'dtype':'F32','shape':[1],'data_offsets':[0,4]}, 'x\\ny': {'dtype':'U8','shape':[0],'data_offsets':[0,0]}}"), new byte[4]);
        AssertMalformed(path, "duplicate tensor name 'x\\u000ay'");

        var direct = new SafetensorsFormatException("some/file", "line one\nline two");
        Assert.Equal("some/file: line one line two", direct.Message);
        Assert.Equal("some/file", direct.FilePath);
    }

    [Fact]
    public void Malformed_LoneSurrogateInName()
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["s.safetensors"];
        WriteRaw(path, J("{'\\ud800': {'dtype':'U8','shape':[1],'data_offsets':[0,1]}}"), new byte[1]);
        AssertMalformed(path, path + ": header");
    }

    [Fact]
    public void Malformed_BoolDataOtherThanZeroOrOne_FailsLoad()
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["b.safetensors"];
        WriteRaw(path, J("{'flags': {'dtype':'BOOL','shape':[3],'data_offsets':[0,3]}}"), [1, 2, 0]);
        Assert.Single(Safetensors.ReadHeader(path).Entries); // the header itself is fine
        var e = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Load(path));
        Assert.Equal(path + ": tensor 'flags': BOOL element 1 has byte value 2, not 0 or 1", e.Message);
    }

    // ------------------------------------------------------------------------------------------------ real file

    [Fact]
    public void RealFixture_HfBertParity_ReadsAndRoundTripsBitExactly()
    {
        string path = TestData.Path("fixtures", "hf-bert-parity", "model.safetensors");
        var (entries, _) = Safetensors.ReadHeader(path);
        Assert.Equal(52, entries.Count);
        Assert.All(entries, e => Assert.Equal(SafetensorsDType.F32, e.DType));
        var word = Assert.Single(entries, e => e.Name == "bert.embeddings.word_embeddings.weight");
        Assert.Equal([30522L, 64L], word.Shape);

        var loaded = Safetensors.Load(path);
        Assert.Equal(52, loaded.Count);
        Assert.Equal([30522L, 64L], loaded["bert.embeddings.word_embeddings.weight"].shape);

        // The loaded bytes are the file's bytes (the word embeddings span several read chunks).
        byte[] file = File.ReadAllBytes(path);
        long dataStart = 8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        Assert.Equal(file.AsSpan((int)(dataStart + word.Begin), (int)(word.End - word.Begin)).ToArray(),
            Bytes(loaded[word.Name]));

        using var tmp = new TestData.TempDir();
        Safetensors.Save(tmp["copy.safetensors"], loaded);
        var again = Safetensors.Load(tmp["copy.safetensors"]);
        Assert.Equal(loaded.Keys.Order(StringComparer.Ordinal), again.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, t) in loaded) AssertSameTensor(t, again[name]);
        DisposeAll(again);
        DisposeAll(loaded);
    }
}
