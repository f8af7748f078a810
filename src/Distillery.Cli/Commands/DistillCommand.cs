using System.CommandLine;
using Distillery.Distillation;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery distill</c>: compress a teacher into a student with a distillation method.</summary>
public static class DistillCommand
{
    public static Command Create(CliContext context)
    {
        var method = new Option<string?>("--method") { Description = "Distillation method: kd (vanilla task-specific KD)." };
        method.AcceptOnlyFromAmong("kd");
        var teacher = new Option<string?>("--teacher") { Description = "Fine-tuned teacher model folder." };
        var student = new Option<string?>("--student") { Description = "Start the student from this model folder (e.g. a pre-trained compact model)." };
        var studentArch = new Option<string?>("--student-arch") { Description = "A fresh student of this architecture, e.g. L2-H256 (embeddings copied when widths match)." };
        var fromTeacher = new Option<string?>("--init-from-teacher") { Description = "Student = these 0-based teacher layers, e.g. 0,2 (DistilBERT-style), with the teacher's embeddings and head." };
        var task = new Option<string?>("--task") { Description = "GLUE task or squad." };
        var data = new Option<string?>("--data") { Description = "GLUE folder or SQuAD JSON file." };
        var output = new Option<string?>("--out", "-o") { Description = "Output model folder." };
        var temperature = new Option<double?>("--temperature") { Description = "Soft-target temperature (default 2)." };
        var alpha = new Option<double?>("--alpha") { Description = "Weight of the soft-target loss; 1 − alpha on the labels (default 0.5)." };
        var maxLength = new Option<int?>("--max-length") { Description = "Longest input in tokens." };
        var splitArticles = new Option<int?>("--split-articles") { Description = "SQuAD: train on N articles, evaluate on the rest." };
        var maxTrain = new Option<int?>("--max-train-examples") { Description = "GLUE: a seeded sample of at most N training examples." };
        var config = new Option<string?>("--config") { Description = "A run_config.json (or options JSON) to start from; flags override it." };
        var resume = new Option<bool>("--resume") { Description = "Continue from the last checkpoint in --out." };
        var training = new TrainingCliOptions();
        var command = new Command("distill", "Distil a fine-tuned teacher into a smaller student on a task (keeps the best dev checkpoint).")
        {
            method, teacher, student, studentArch, fromTeacher, task, data, output, temperature, alpha, maxLength, splitArticles, maxTrain, config, resume,
        };
        training.AddTo(command);
        command.SetAction(parse =>
        {
            var basis = parse.GetValue(config) is string path ? PretrainCommand.LoadConfig<DistillOptions>(path) : null;
            var init = StudentFrom(parse.GetValue(student), parse.GetValue(studentArch), parse.GetValue(fromTeacher)) ?? basis?.Student
                ?? throw new ArgumentException("give one of --student DIR, --student-arch ARCH or --init-from-teacher LAYERS");
            var options = (basis ?? new DistillOptions
            {
                Teacher = parse.GetValue(teacher) ?? throw new ArgumentException("give --teacher (the fine-tuned teacher folder)"),
                Student = init,
                Task = parse.GetValue(task) ?? throw new ArgumentException("give --task"),
                Data = parse.GetValue(data) ?? throw new ArgumentException("give --data"),
                Out = parse.GetValue(output) ?? throw new ArgumentException("give --out"),
            }) with { Student = init };
            if (parse.GetValue(teacher) is string t) options = options with { Teacher = t };
            if (parse.GetValue(task) is string k) options = options with { Task = k };
            if (parse.GetValue(data) is string d) options = options with { Data = d };
            if (parse.GetValue(output) is string o) options = options with { Out = o };
            if (parse.GetValue(method) is string) options = options with { Method = DistillMethod.Kd };
            if (parse.GetValue(temperature) is double temp) options = options with { Kd = options.Kd with { Temperature = temp } };
            if (parse.GetValue(alpha) is double a) options = options with { Kd = options.Kd with { Alpha = a } };
            if (parse.GetValue(maxLength) is int m) options = options with { MaxLength = m };
            if (parse.GetValue(splitArticles) is int s) options = options with { SplitArticles = s };
            if (parse.GetValue(maxTrain) is int cap) options = options with { MaxTrainExamples = cap };
            options = options with { Trainer = training.Apply(parse, options.Trainer) };
            var metrics = RunProgress.Show(context, events => Distiller.Run(options, parse.GetValue(resume), events));
            context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: dev {metrics["dev"]!.ToJsonString()} (best at step {metrics["best_step"]})");
            return 0;
        });
        return command;
    }

    static StudentInit? StudentFrom(string? dir, string? arch, string? layers)
    {
        int given = (dir != null ? 1 : 0) + (arch != null ? 1 : 0) + (layers != null ? 1 : 0);
        if (given > 1) throw new ArgumentException("give only one of --student, --student-arch and --init-from-teacher");
        if (dir != null) return new StudentInit(StudentInitKind.Checkpoint, Checkpoint: dir);
        if (arch != null) return new StudentInit(StudentInitKind.Random, Arch: arch);
        if (layers == null) return null;
        var list = layers.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(x => int.TryParse(x, out int i) ? i : throw new ArgumentException($"--init-from-teacher: \"{x}\" is not a layer index")).ToArray();
        return new StudentInit(StudentInitKind.TeacherLayers, list);
    }
}
