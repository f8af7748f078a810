using System.CommandLine;
using System.Text.Json.Nodes;
using Distillery.Distillation;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary>
/// <c>distillery distill</c>: compress a teacher into a student with any registered method. The method flags are
/// generated from the methods' options records (<see cref="MethodFlags"/>); routing (task or corpus, student or not)
/// is the registry's (<see cref="DistillMethod"/>), so this command names no method.
/// </summary>
public static class DistillCommand
{
    public static Command Create(CliContext context)
    {
        var methods = DistillMethods.All;
        var method = new Option<string?>("--method")
        {
            Description = $"The method (default {DistillMethods.Default.Name}): " + string.Join("; ", methods.Select(m =>
                $"{m.Name}: {m.Summary} (on {Data(m.Trains)})")) + ".",
        };
        method.AcceptOnlyFromAmong([.. methods.Select(m => m.Name)]);
        var teacher = new Option<string?>("--teacher") { Description = "Teacher model folder: fine-tuned for a task, pre-trained (masked-LM) for a corpus." };
        var student = new Option<string?>("--student") { Description = "Start the student from this model folder (e.g. a pre-trained compact model)." };
        var studentArch = new Option<string?>("--student-arch") { Description = "A fresh student of this architecture, e.g. L2-H256 (embeddings copied when widths match)." };
        var fromTeacher = new Option<string?>("--init-from-teacher") { Description = "Student = these 0-based teacher layers, e.g. 0,2 (DistilBERT-style), with the teacher's embeddings and head." };
        var output = new Option<string?>("--out", "-o") { Description = "Output model folder." };
        var transfer = new Option<string[]>("--transfer-data")
        {
            Description = "On a GLUE task: distil on unlabeled text instead of the training set " +
                "(one example per line, tab between a pair's texts; soft targets only).",
            AllowMultipleArgumentsPerToken = true,
        };
        var teacherCache = new Option<string?>("--teacher-cache")
        {
            Description = "kd on a GLUE task, or embedding: a folder of teacher-output shards; the teacher's logits (or sentence vectors) on the training " +
                "examples are computed once per teacher and examples and reused by every run and seed (without it: once per run, reused by its epochs).",
        };
        var corpus = new Option<string[]>("--corpus")
        {
            Description = "Text files or folders to distil on (a corpus method).", AllowMultipleArgumentsPerToken = true,
        };
        var seqLength = new Option<int?>("--seq-length") { Description = "On a corpus: tokens per packed sequence (default 128)." };
        var invalidUtf8 = new Option<string?>("--invalid-utf8") { Description = "On a corpus: error (default) or latin1 for lines that are not UTF-8." };
        var config = new Option<string?>("--config") { Description = "A run_config.json (or options JSON) to start from, for any method; flags override it." };
        var resume = new Option<bool>("--resume") { Description = "Continue from the last checkpoint in --out." };
        var overwrite = TrainingCliOptions.OverwriteOption();
        var task = new TaskCliOptions();
        var training = new TrainingCliOptions();
        var methodFlags = new MethodFlags(methods);
        var command = new Command("distill",
            "Distil a teacher into a smaller student: on a task (keeps the best dev checkpoint) or on a corpus (fine-tune the result next).\n" +
            $"Example: distillery distill --method {DistillMethods.Default.Name} --teacher runs/teacher/sst2 --task sst2 --data ../shared/data/glue " +
            "--init-from-teacher 0,2 --out runs/student")
        {
            method, teacher, student, studentArch, fromTeacher, output, transfer, teacherCache, corpus, seqLength, invalidUtf8, config, resume, overwrite,
        };
        task.AddTo(command);
        methodFlags.AddTo(command);
        training.AddTo(command);
        command.SetAction(parse =>
        {
            var flags = task.ConfigKeys(parse);
            flags["method"] = parse.GetValue(method);
            flags["teacher"] = parse.GetValue(teacher);
            flags["out"] = parse.GetValue(output);
            var basis = parse.GetValue(config) is string path ? PretrainCommand.LoadConfig<DistillOptions>(path, flags) : null;
            var chosen = basis?.Registered ?? DistillMethods.Find(parse.GetValue(method) ?? DistillMethods.Default.Name);
            // A method that trains on both distils on the corpus when one is given (or configured), else on the task.
            bool corpusGiven = parse.GetValue(corpus) is { Length: > 0 } || basis?.Corpus != null;
            bool onCorpus = chosen.Trains == MethodData.Corpus || (chosen.Trains.HasFlag(MethodData.Corpus) && corpusGiven);
            var options = new DistillOptions
            {
                Method = methodFlags.Apply(parse, chosen, basis?.Method ?? chosen.DefaultOptions()),
                Teacher = parse.GetValue(teacher) ?? basis?.Teacher ?? throw new ArgumentException("give --teacher (the teacher's model folder)"),
                Student = StudentFrom(parse.GetValue(student), parse.GetValue(studentArch), parse.GetValue(fromTeacher)) ?? basis?.Student,
                Task = onCorpus ? NoTask(parse, task) : task.Apply(parse, basis?.Task),
                TransferData = parse.GetValue(transfer) is { Length: > 0 } files ? files : basis?.TransferData,
                TeacherCache = parse.GetValue(teacherCache) ?? basis?.TeacherCache,
                Corpus = onCorpus ? Corpus(parse, basis?.Corpus, corpus, seqLength, invalidUtf8) : NoCorpus(parse, corpus, seqLength, invalidUtf8),
                Out = parse.GetValue(output) ?? basis?.Out ?? throw new ArgumentException("give --out"),
            };
            options = options with { Trainer = training.Apply(parse, basis?.Trainer ?? options.ResolvedTrainer) };
            var metrics = RunProgress.Show(context, events => Distiller.Run(options, parse.GetValue(resume), events, parse.GetValue(overwrite)));
            if (onCorpus)
                context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: {metrics["eval"]?.ToJsonString() ?? (metrics["mlm_head_untrained"] != null ? "masked-LM head untrained, not evaluated" : "not evaluated")} (fine-tune it next)");
            else
                context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: dev {metrics["dev"]!.ToJsonString()} (best at step {metrics["best_step"]})");
            context.WarnIfDistilleryOnly(options.Out);
            return 0;
        });
        return command;
    }

    static string Data(MethodData trains) =>
        trains == (MethodData.Task | MethodData.Corpus) ? "--corpus or --task" : trains == MethodData.Corpus ? "--corpus" : "--task";

    static Training.TaskSpec? NoTask(ParseResult parse, TaskCliOptions task) =>
        task.Given(parse) ? throw new ArgumentException("this run distils on a corpus: leave out the task flags (--task, --data, ...)") : null;

    static CorpusSpec? NoCorpus(ParseResult parse, params Option[] corpusFlags) =>
        corpusFlags.FirstOrDefault(o => parse.GetResult(o) != null) is Option given
            ? throw new ArgumentException($"{given.Name} applies on a corpus; this method distils on a task")
            : null;

    static CorpusSpec Corpus(ParseResult parse, CorpusSpec? basis, Option<string[]> corpus, Option<int?> seqLength, Option<string?> invalidUtf8)
    {
        var files = parse.GetValue(corpus) is { Length: > 0 } c ? c : basis?.Files ?? throw new ArgumentException("give --corpus (text files or folders)");
        var o = (basis ?? new CorpusSpec { Files = files }) with { Files = files };
        if (parse.GetValue(seqLength) is int l) o = o with { SeqLength = l };
        if (parse.GetValue(invalidUtf8) is string u) o = o with { InvalidUtf8 = CliEnums.Parse<Data.InvalidUtf8>(u, "--invalid-utf8") };
        return o;
    }

    static StudentInit? StudentFrom(string? dir, string? arch, string? layers)
    {
        int given = (dir != null ? 1 : 0) + (arch != null ? 1 : 0) + (layers != null ? 1 : 0);
        if (given > 1) throw new ArgumentException("give only one of --student, --student-arch and --init-from-teacher");
        if (dir != null) return new StudentInit(StudentInitKind.Checkpoint, Checkpoint: dir);
        if (arch != null) return new StudentInit(StudentInitKind.Random, Arch: arch);
        if (layers == null) return null;
        return new StudentInit(StudentInitKind.TeacherLayers, LayerExtraction.ParseLayers(layers, "--init-from-teacher"));
    }
}
