return Distillery.Cli.DistilleryCli.Run(args);
