import { BadRequestException, type PipeTransform } from '@nestjs/common';
import type { z } from 'zod';

/** One field-level problem in a rejected request. */
export interface FieldIssue {
  path: string;
  message: string;
}

/** The body of every 400 this API sends for bad input. */
export interface ValidationErrorBody {
  statusCode: 400;
  error: 'Bad Request';
  message: string;
  issues: FieldIssue[];
}

export function validationError(where: string, error: z.ZodError): BadRequestException {
  const issues = error.issues.map((issue) => ({
    path: [where, ...issue.path.map(String)].join('.'),
    message: issue.message,
  }));
  const body: ValidationErrorBody = {
    statusCode: 400,
    error: 'Bad Request',
    message: `invalid ${where}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
    issues,
  };
  return new BadRequestException(body);
}

/** Validates (and coerces) a request part with a zod schema: `@Query(new ZodValidationPipe(S, 'query'))`. */
export class ZodValidationPipe<S extends z.ZodType> implements PipeTransform<unknown, z.output<S>> {
  constructor(
    private readonly schema: S,
    private readonly where: 'query' | 'body' | 'params' = 'body',
  ) {}

  transform(value: unknown): z.output<S> {
    const parsed = this.schema.safeParse(value);
    if (!parsed.success) throw validationError(this.where, parsed.error);
    return parsed.data;
  }
}
