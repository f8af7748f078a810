// A small builder for ONNX graphs over the generated protobuf classes (Export/onnx.proto): nodes in topological order,
// initializers stored as little-endian raw_data, scalar constants shared by value, and unique value names.
using System.Runtime.InteropServices;
using Distillery.Export.Onnx;
using Google.Protobuf;

namespace Distillery.Export;

/// <summary>Builds one <see cref="GraphProto"/>: add nodes in execution order; every helper returns its output's name.</summary>
internal sealed class OnnxGraphBuilder
{
    /// <summary>The domain of ONNX Runtime's contrib operators.</summary>
    public const string MicrosoftDomain = "com.microsoft";

    private readonly GraphProto graph = new() { Name = "distillery" };
    private readonly HashSet<string> names = new(StringComparer.Ordinal);
    private readonly Dictionary<(float, TensorProto.Types.DataType), string> scalars = new();
    private int counter;

    /// <summary>Whether a node of the com.microsoft domain was added (the model must then import that opset).</summary>
    public bool UsesMicrosoftDomain { get; private set; }

    /// <summary>The graph built so far.</summary>
    public GraphProto Graph => graph;

    /// <summary>A fresh value name starting with <paramref name="hint"/>.</summary>
    public string Fresh(string hint)
    {
        string name = hint;
        while (!names.Add(name)) name = $"{hint}_{++counter}";
        return name;
    }

    /// <summary>Declares a graph input: a tensor of <paramref name="type"/> whose dims are fixed numbers or symbols.</summary>
    public string Input(string name, TensorProto.Types.DataType type, params object[] dims)
    {
        if (!names.Add(name)) throw new InvalidOperationException($"duplicate value name {name}");
        graph.Input.Add(ValueInfo(name, type, dims));
        return name;
    }

    /// <summary>Declares <paramref name="value"/> (already produced by a node) as a graph output.</summary>
    public void Output(string value, TensorProto.Types.DataType type, params object[] dims) => graph.Output.Add(ValueInfo(value, type, dims));

    private static ValueInfoProto ValueInfo(string name, TensorProto.Types.DataType type, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d switch
            {
                string symbol => new TensorShapeProto.Types.Dimension { DimParam = symbol },
                int n => new TensorShapeProto.Types.Dimension { DimValue = n },
                long n => new TensorShapeProto.Types.Dimension { DimValue = n },
                _ => throw new ArgumentException($"dimension {d} is neither a symbol nor a number"),
            });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    /// <summary>Adds an fp32 initializer of shape <paramref name="dims"/> (row-major data).</summary>
    public string Initializer(string name, ReadOnlySpan<float> data, params long[] dims) =>
        Initializer(name, TensorProto.Types.DataType.Float, MemoryMarshal.AsBytes(data), data.Length, dims);

    /// <summary>Adds an int8 initializer.</summary>
    public string Initializer(string name, ReadOnlySpan<sbyte> data, params long[] dims) =>
        Initializer(name, TensorProto.Types.DataType.Int8, MemoryMarshal.AsBytes(data), data.Length, dims);

    /// <summary>Adds an int64 initializer.</summary>
    public string Initializer(string name, ReadOnlySpan<long> data, params long[] dims) =>
        Initializer(name, TensorProto.Types.DataType.Int64, MemoryMarshal.AsBytes(data), data.Length, dims);

    private string Initializer(string name, TensorProto.Types.DataType type, ReadOnlySpan<byte> bytes, int count, long[] dims)
    {
        long expected = dims.Aggregate(1L, (a, b) => a * b);
        if (expected != count) throw new ArgumentException($"initializer {name}: {count} values for shape [{string.Join(", ", dims)}]");
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX raw_data is little-endian; this machine is big-endian");
        name = Fresh(name);
        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(bytes) };
        tensor.Dims.AddRange(dims);
        graph.Initializer.Add(tensor);
        return name;
    }

    /// <summary>A shared fp32 scalar constant (rank 0).</summary>
    public string Scalar(float value)
    {
        if (scalars.TryGetValue((value, TensorProto.Types.DataType.Float), out var name)) return name;
        name = Initializer($"const_{value.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}", [value]);
        scalars[(value, TensorProto.Types.DataType.Float)] = name;
        return name;
    }

    /// <summary>A shared 1-D int64 constant.</summary>
    public string Int64s(params long[] values)
    {
        string key = "i64_" + string.Join("_", values).Replace('-', 'm');
        if (names.Contains(key)) return key;
        return Initializer(key, values, values.Length);
    }

    /// <summary>An int64 scalar constant (rank 0), e.g. a Gather index that removes the axis.</summary>
    public string Int64Scalar(long value)
    {
        string key = $"i64s_{value}".Replace('-', 'm');
        if (names.Contains(key)) return key;
        return Initializer(key, [value]);
    }

    /// <summary>Adds a node with one output and returns the output's name.</summary>
    public string Node(string opType, string[] inputs, string outputHint, params AttributeProto[] attributes) =>
        NodeMulti(opType, inputs, [outputHint], attributes)[0];

    /// <summary>Adds a contrib (com.microsoft) node with one output.</summary>
    public string MicrosoftNode(string opType, string[] inputs, string outputHint, params AttributeProto[] attributes) =>
        MicrosoftNodeMulti(opType, inputs, [outputHint], attributes)[0];

    /// <summary>Adds a contrib (com.microsoft) node with several outputs (an output the graph never reads still needs a name when the op's schema requires it).</summary>
    public string[] MicrosoftNodeMulti(string opType, string[] inputs, string[] outputHints, params AttributeProto[] attributes)
    {
        UsesMicrosoftDomain = true;
        var outputs = NodeMulti(opType, inputs, outputHints, attributes);
        graph.Node[^1].Domain = MicrosoftDomain;
        return outputs;
    }

    /// <summary>Adds a node with several outputs.</summary>
    public string[] NodeMulti(string opType, string[] inputs, string[] outputHints, params AttributeProto[] attributes)
    {
        var outputs = outputHints.Select(Fresh).ToArray();
        var node = new NodeProto { OpType = opType, Name = Fresh($"node_{opType}_{graph.Node.Count}") };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        graph.Node.Add(node);
        return outputs;
    }

    /// <summary>An INT attribute.</summary>
    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };
    /// <summary>A FLOAT attribute.</summary>
    public static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    /// <summary>An INTS attribute.</summary>
    public static AttributeProto Ints(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }
}
