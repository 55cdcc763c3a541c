"""Running the job on AWS EMR: request builders, AWS calls and the command line."""
