import { type CallHandler, type ExecutionContext, Injectable, type NestInterceptor } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import type { Observable } from 'rxjs';
import type { MetricsService } from './metrics.service.js';

/**
 * Times every HTTP request. The route label is the matched pattern (`/api/apps/:id`), never the raw
 * URL, so an unknown path cannot blow up the metric's cardinality.
 *
 * Two parts: the Express middleware times everything, including requests no controller handles;
 * the interceptor runs only when a controller does, and names the route. (`req.route` alone is
 * not enough: Nest mounts middleware on a catch-all route, which would label every 404.)
 */
const ROUTE_KEY = 'stewardRoute';

export function httpMetricsMiddleware(metrics: MetricsService) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const end = metrics.httpRequestDuration.startTimer();
    res.once('finish', () => {
      const route = typeof res.locals[ROUTE_KEY] === 'string' ? res.locals[ROUTE_KEY] : 'unmatched';
      end({ method: req.method, route, status: String(res.statusCode) });
    });
    next();
  };
}

@Injectable()
export class RouteLabelInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() === 'http') {
      const http = context.switchToHttp();
      const route = (http.getRequest<Request>().route as { path?: string } | undefined)?.path;
      if (route) http.getResponse<Response>().locals[ROUTE_KEY] = route;
    }
    return next.handle();
  }
}
