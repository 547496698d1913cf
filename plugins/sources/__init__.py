"""Built-in task sources: ``task_files`` (-T directories, files, glob patterns) and ``arguments_file``
(-A, one task per argument line). Each implements ``parallelr_collect_tasks`` and returns None when
the command line is not for it."""
