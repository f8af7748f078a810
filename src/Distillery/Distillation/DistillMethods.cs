using Distillery.Models;
using Distillery.Training;

namespace Distillery.Distillation;

/// <summary>A method's options record (one per method, in the method's file).</summary>
public interface IDistillMethodOptions;

/// <summary>A method's options record that checks its own fields.</summary>
public interface IDistillMethodOptions<TSelf> : IDistillMethodOptions where TSelf : IDistillMethodOptions<TSelf>
{
    /// <summary>Checks the fields; throws naming the bad one.</summary>
    TSelf Validate();
}

/// <summary>What a method trains on.</summary>
[Flags]
public enum MethodData
{
    /// <summary>A task's labelled (or transfer) examples, from a fine-tuned teacher.</summary>
    Task = 1,
    /// <summary>Masked-LM batches of a text corpus, from a pre-trained (masked-LM) teacher.</summary>
    Corpus = 2,
}

/// <summary>
/// What is known of a distillation before anything loads: the teacher's config (null in a recipe when an earlier stage
/// produces the teacher), the head the run uses (masked-LM on a corpus), and the student as given (or defaulted).
/// </summary>
public sealed record DistillPlan(BertConfig? Teacher, BertTask Head, StudentInit? Student);

/// <summary>
/// What a method is built from: the loaded teacher, the student to build (null when the method builds its own), the
/// head and the seed. <see cref="Teacher"/> freezes the teacher on first use.
/// </summary>
public sealed class MethodInputs(BertTaskModel teacherModel, StudentInit? student, BertTask head, long seed)
{
    private Teacher? teacher;

    /// <summary>The teacher model as loaded (a method that reuses its modules, as Theseus does, takes it unfrozen).</summary>
    public BertTaskModel TeacherModel => teacherModel;
    /// <summary>The teacher, frozen (eval mode, no gradients).</summary>
    public Teacher Teacher => teacher ??= new Teacher(teacherModel);
    /// <summary>The head of teacher and student.</summary>
    public BertTask Head => head;
    /// <summary>The run's seed.</summary>
    public long Seed => seed;

    /// <summary>The student, built from its initialisation (given, or the method's default).</summary>
    public BertTaskModel BuildStudent() =>
        (student ?? throw new InvalidOperationException("this method was given no student to build")).Build(teacherModel, head, seed);
}

/// <summary>
/// One registered distillation method: its name, what it trains on, its options record, how it builds its student, what
/// it checks before anything runs, and what it can do. Each method's file declares one (a static <c>Method</c>), and
/// <see cref="DistillMethods"/> lists them; <see cref="Distiller"/>, recipes and the CLI read nothing else.
/// </summary>
public abstract class DistillMethod
{
    /// <summary>The name in <c>--method</c>, <c>"method"</c> and run configs ("kd").</summary>
    public required string Name { get; init; }
    /// <summary>The JSON key of its options beside <c>"method"</c> (default: <see cref="Name"/>).</summary>
    public string? OptionsKey { get; init; }
    /// <summary>One line for the CLI's help: the method and its paper.</summary>
    public required string Summary { get; init; }
    /// <summary>The student comes from the teacher inside the method; a given student is an error.</summary>
    public bool BuildsOwnStudent { get; init; }
    /// <summary>The student when none is given (null: one must be given, unless <see cref="BuildsOwnStudent"/>).</summary>
    public Func<BertConfig, StudentInit>? DefaultStudent { get; init; }
    /// <summary>Why a run cannot continue from a checkpoint (null: it can).</summary>
    public string? CannotResume { get; init; }
    /// <summary>
    /// On a task, the teacher enters the loss through its head's output alone (<see cref="Teacher.Logits"/>: logits, or a
    /// sentence embedding's vectors), so it is computed once on the training examples (<see cref="TeacherLogitCache"/>)
    /// instead of in every step.
    /// </summary>
    public bool DistilsLogitsOnly { get; init; }
    /// <summary>
    /// On a task, the result is the student as training ends, not the best dev checkpoint: intermediate students are not
    /// the result (e.g. still wider than the target). The periodic dev evaluations are still run and logged (the
    /// teacher-student discrepancy over training is one of them).
    /// </summary>
    public bool ResultIsFinalModel { get; init; }

    /// <summary>The JSON key of its options.</summary>
    public string Key => OptionsKey ?? Name;
    /// <summary>Whether a run can continue from a checkpoint.</summary>
    public bool CanResume => CannotResume == null;
    /// <summary>What it trains on (a method that does both picks the corpus when one is given).</summary>
    public abstract MethodData Trains { get; }
    /// <summary>Its options record.</summary>
    public abstract Type OptionsType { get; }
    /// <summary>Its options with their defaults.</summary>
    public abstract IDistillMethodOptions DefaultOptions();

    /// <summary>
    /// Checks a distillation with this method before anything loads or trains: its options, the data it trains on,
    /// resume, the student, unlabeled transfer data, and what the method needs of the teacher (when its config is known).
    /// Distiller and recipes both call this. Returns the plan the method was checked against.
    /// </summary>
    public DistillPlan Check(DistillOptions options, BertConfig? teacher, bool resume)
    {
        var data = options.Corpus != null ? MethodData.Corpus : MethodData.Task;
        if (options.Corpus != null && options.Task != null) throw new ArgumentException("give a task or a corpus to distil on, not both");
        if (options.Corpus == null && options.Task == null)
            throw new ArgumentException(Trains.HasFlag(MethodData.Task)
                ? $"{Name} distils on a task: give the task and its data"
                : $"{Name} distils on a corpus: give the corpus (text files or folders)");
        if (!Trains.HasFlag(data))
            throw new ArgumentException(data == MethodData.Task
                ? $"{Name} distils on a corpus (text files or folders), not on a task"
                : $"{Name} distils on a task, not on a corpus");
        options.Task?.Validate();
        if (resume && CannotResume != null) throw new ArgumentException($"{Name} cannot resume: {CannotResume}; start again");
        if (BuildsOwnStudent && options.Student != null) throw new ArgumentException($"{Name} builds its student from the teacher; leave out the student");
        if (!BuildsOwnStudent && options.Student == null && DefaultStudent == null)
            throw new ArgumentException($"{Name} needs a student: --student DIR, --student-arch ARCH or --init-from-teacher LAYERS (\"student\" in a config)");
        if (options.TransferData != null)
        {
            if (options.Task is not { IsSquad: false }) throw new ArgumentException("transfer data is supported for GLUE tasks (sentences or sentence pairs)");
            if (WithoutLabels(options.Method) is string problem) throw new ArgumentException($"transfer data has no labels: {problem}");
        }
        if (options.TeacherCache != null)
        {
            if (!DistilsLogitsOnly) throw new ArgumentException($"a teacher-logit cache serves methods that distil the teacher's outputs alone (kd, embedding); {Name} needs more of the teacher");
            if (options.Task is not { IsSquad: false }) throw new ArgumentException("a teacher-logit cache holds classification and regression logits: give a GLUE task");
        }
        var student = options.Student ?? (teacher != null ? DefaultStudent?.Invoke(teacher) : null);
        var plan = new DistillPlan(teacher, data == MethodData.Corpus ? BertTask.MaskedLM : options.Task!.Head, student);
        CheckTyped(options.Method, plan);
        // A teacher whose masked-LM head was never trained (a MiniLM-distilled teacher assistant, say) serves methods
        // that read its encoder alone; soft targets from that head would be noise. (A head missing from the weights
        // file is found when the teacher loads.)
        if (data == MethodData.Corpus && teacher?.MlmHeadUntrained is string why && ReadsTeacherMlmHead(options.Method))
            throw new ArgumentException($"{Name} distils the teacher's masked-LM predictions, but the teacher's masked-LM head was never trained ({why}); " +
                "use a teacher with a trained head, or train one on its frozen encoder first (distillery pretrain --init-from TEACHER --freeze-encoder)");
        return plan;
    }

    /// <summary>
    /// On a corpus, whether these options read the teacher's masked-LM predictions (its head), so the teacher must have
    /// a trained one; a method that reads only the teacher's encoder (MiniLM) takes a teacher without.
    /// </summary>
    public abstract bool ReadsTeacherMlmHead(IDistillMethodOptions options);

    /// <summary>
    /// On a corpus, why these options leave the student's masked-LM head untrained (the saved model says so, see
    /// <see cref="BertConfig.MlmHeadUntrained"/>); null when the objective trains it.
    /// </summary>
    public abstract string? UntrainedMlmHead(IDistillMethodOptions options);

    /// <summary>Validates the options and checks what the method needs of the teacher and student.</summary>
    protected abstract void CheckTyped(IDistillMethodOptions options, DistillPlan plan);

    /// <summary>Why these options cannot train on unlabeled examples (null: they can).</summary>
    protected abstract string? WithoutLabels(IDistillMethodOptions options);

    /// <summary>The method on task batches.</summary>
    public abstract IDistillationMethod<TaskBatch> ForTask(IDistillMethodOptions options, MethodInputs inputs);

    /// <summary>The method on masked-LM corpus batches.</summary>
    public abstract IDistillationMethod<MlmBatch> ForCorpus(IDistillMethodOptions options, MethodInputs inputs);
}

/// <summary>A method whose options are <typeparamref name="TOptions"/>; its file fills the parts below.</summary>
public sealed class DistillMethod<TOptions> : DistillMethod where TOptions : class, IDistillMethodOptions<TOptions>, new()
{
    /// <summary>What it checks about the teacher and student before anything loads (the options are already valid).</summary>
    public Action<TOptions, DistillPlan>? CheckTeacher { get; init; }
    /// <summary>Why these options need labels (transfer data has none); null when they do not.</summary>
    public Func<TOptions, string?>? NeedsLabels { get; init; }
    /// <summary>On a corpus, whether these options read the teacher's masked-LM head (null: they do).</summary>
    public Func<TOptions, bool>? UsesTeacherMlmHead { get; init; }
    /// <summary>On a corpus, why these options leave the student's masked-LM head untrained (null function, or null result: they train it).</summary>
    public Func<TOptions, string?>? LeavesMlmHeadUntrained { get; init; }
    /// <summary>Builds the method on task batches (null: it does not train on tasks).</summary>
    public Func<TOptions, MethodInputs, IDistillationMethod<TaskBatch>>? OnTask { get; init; }
    /// <summary>Builds the method on corpus batches (null: it does not train on corpora).</summary>
    public Func<TOptions, MethodInputs, IDistillationMethod<MlmBatch>>? OnCorpus { get; init; }

    /// <inheritdoc/>
    public override MethodData Trains => (OnTask != null ? MethodData.Task : 0) | (OnCorpus != null ? MethodData.Corpus : 0);
    /// <inheritdoc/>
    public override Type OptionsType => typeof(TOptions);
    /// <inheritdoc/>
    public override IDistillMethodOptions DefaultOptions() => new TOptions();

    static TOptions Typed(IDistillMethodOptions options) =>
        options as TOptions ?? throw new ArgumentException($"options {options.GetType().Name} are not {typeof(TOptions).Name}");

    /// <inheritdoc/>
    protected override void CheckTyped(IDistillMethodOptions options, DistillPlan plan)
    {
        var valid = Typed(options).Validate();   // before CheckTeacher: ?.Invoke would skip evaluating it when there is none
        CheckTeacher?.Invoke(valid, plan);
    }

    /// <inheritdoc/>
    protected override string? WithoutLabels(IDistillMethodOptions options) => NeedsLabels?.Invoke(Typed(options));

    /// <inheritdoc/>
    public override bool ReadsTeacherMlmHead(IDistillMethodOptions options) => UsesTeacherMlmHead?.Invoke(Typed(options)) ?? true;

    /// <inheritdoc/>
    public override string? UntrainedMlmHead(IDistillMethodOptions options) => LeavesMlmHeadUntrained?.Invoke(Typed(options));

    /// <inheritdoc/>
    public override IDistillationMethod<TaskBatch> ForTask(IDistillMethodOptions options, MethodInputs inputs) =>
        (OnTask ?? throw new ArgumentException($"{Name} does not distil on a task"))(Typed(options).Validate(), inputs);

    /// <inheritdoc/>
    public override IDistillationMethod<MlmBatch> ForCorpus(IDistillMethodOptions options, MethodInputs inputs) =>
        (OnCorpus ?? throw new ArgumentException($"{Name} does not distil on a corpus"))(Typed(options).Validate(), inputs);
}

/// <summary>
/// The registry: every distillation method, one line each. Adding a method is its file (options record, class, and its
/// <c>Method</c> declaration) plus its line here; nothing else names it. Tests (or a host application) may
/// <see cref="Register"/> more.
/// </summary>
public static class DistillMethods
{
    private static readonly object Gate = new();
    private static readonly List<DistillMethod> Registered =
    [
        KnowledgeDistillation.Method,
        DistilBertMethod.Method,
        MiniLm.Method,
        Theseus.Method,
        HomoDistil.Method,
        EmbeddingDistillation.Method,
    ];

    /// <summary>Every method, in registration order (the first is the default).</summary>
    public static IReadOnlyList<DistillMethod> All
    {
        get { lock (Gate) return Registered.ToArray(); }
    }

    /// <summary>The method a config without <c>"method"</c> means.</summary>
    public static DistillMethod Default => All[0];

    /// <summary>The names, for messages and <c>--method</c>'s accepted values.</summary>
    public static IReadOnlyList<string> Names => All.Select(m => m.Name).ToArray();

    /// <summary>
    /// The method named <paramref name="name"/>, case-insensitive and ignoring '_' and '-' (run configs written before
    /// the registry say "distil_bert", "mini_lm", "homo_distil"); an unknown name is one line listing the known ones.
    /// </summary>
    public static DistillMethod Find(string name) =>
        All.FirstOrDefault(m => Plain(m.Name) == Plain(name))
        ?? throw new ArgumentException($"unknown method \"{name}\" (known: {string.Join(", ", Names)})");

    static string Plain(string name) => name.Replace("_", "").Replace("-", "").ToLowerInvariant();

    /// <summary>The method whose options record <paramref name="options"/> is.</summary>
    public static DistillMethod Of(IDistillMethodOptions options) =>
        All.FirstOrDefault(m => m.OptionsType == options.GetType())
        ?? throw new ArgumentException($"{options.GetType().Name} is not the options record of a registered method");

    /// <summary>Adds a method; its name, options key and options record must be new.</summary>
    public static void Register(DistillMethod method)
    {
        lock (Gate)
        {
            if (Registered.Any(m => Plain(m.Name) == Plain(method.Name) || m.Key == method.Key || m.OptionsType == method.OptionsType))
                throw new ArgumentException($"method {method.Name} (options {method.OptionsType.Name}, key {method.Key}) clashes with a registered one");
            if (method.Trains == 0) throw new ArgumentException($"method {method.Name} builds for neither a task nor a corpus");
            Registered.Add(method);
        }
    }
}
